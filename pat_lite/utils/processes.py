"""Worker processes that die with their parent.

A pool of spawned workers (`pat-lite reproduce --workers K`) outlives a parent that is killed outright
(SIGKILL, the out-of-memory killer): idle workers wait forever on a task queue whose other end they hold
themselves, busy ones finish their row for nobody, and multiprocessing's resource tracker waits for them.
`die_with_parent`, a pool's initializer, ends a worker as soon as its parent is gone; the resource tracker
then sees every user gone and exits too.
"""

from __future__ import annotations

import os
import threading
import time

#: How often a worker checks that its parent is alive (seconds).
PARENT_CHECK_INTERVAL = 0.5


def die_with_parent(parent_pid: int, interval: float = PARENT_CHECK_INTERVAL) -> None:
    """Pool initializer: end this process (`os._exit`, no cleanup: its parent is gone) once its parent
    `parent_pid` has died, checked every `interval` seconds by a daemon thread. A dead parent's children
    are adopted by another process, so the parent id changes."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()
