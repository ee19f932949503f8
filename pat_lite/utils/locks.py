"""One command at a time per output folder: an OS-level lock that dies with its process.

`hold_folder(path)` takes an exclusive `flock` on `.<name>.lock` beside the folder: beside, not inside,
because the folder may not exist yet and a finished run replaces it by a rename (a lock file inside would
move with the old folder). A second command that asks for the same folder is refused at once, in one line
naming the holder (pid, command, start time). The kernel drops the lock when its process ends, however it
ends (SIGKILL, the out-of-memory killer, a power cut), so a killed run leaves no stale lock; the lock file
a killed holder leaves behind is reused, and removed by the next holder when it is done.

Within one process the lock is re-entrant (a command may hold its output folder and call code that holds
it again). Where the lock file cannot be created (a folder that is writable inside a read-only parent),
the folder's own descriptor is locked instead. Child processes never inherit the lock (descriptors are
opened close-on-exec). POSIX only: elsewhere no lock is taken.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pat_lite.utils.errors import RunFolderError

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None

LOCK_SUFFIX = ".lock"


@dataclass
class _Held:
    fd: int
    lock_file: Path | None  # None: the folder's own descriptor is locked
    pid: int
    depth: int = 1


_held: dict[str, _Held] = {}
_guard = threading.Lock()


def lock_file(folder: str | os.PathLike) -> Path:
    """Where the lock of `folder` lives: `.<name>.lock` in its (resolved) parent folder."""
    folder = Path(os.path.abspath(folder))
    return Path(os.path.realpath(folder.parent)) / f".{folder.name}{LOCK_SUFFIX}"


def _holder_text() -> str:
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"
    if len(command) > 160:
        command = command[:157] + "..."
    return f"pid {os.getpid()}: {command}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", errors="replace").strip()
    except OSError:
        text = ""
    return " ".join(text.split()) or "holder unknown"


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _in_use(folder: Path, fd: int, what: str) -> RunFolderError:
    holder = _read_holder(fd)
    os.close(fd)
    return RunFolderError(
        f"{folder} is in use by another pat-lite command ({holder}); wait for it to end, or choose another "
        f"{what}"
    )


def _acquire(folder: Path, what: str) -> _Held:
    target = lock_file(folder)
    target.parent.mkdir(parents=True, exist_ok=True)  # the folder's parent, which writing it creates anyway
    while True:
        try:
            fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError:
            if not folder.is_dir():
                raise
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            if not _try_lock(fd):
                raise _in_use(folder, fd, what) from None
            return _Held(fd, None, os.getpid())
        if not _try_lock(fd):
            raise _in_use(folder, fd, what)
        # The previous holder removes the file when it is done: if it did so between our open and our lock,
        # this lock guards a file nobody else will open. Take the one that is there now.
        try:
            current = os.path.samestat(os.fstat(fd), os.stat(target))
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, (_holder_text() + "\n").encode(), 0)
    return _Held(fd, target, os.getpid())


def _release(held: _Held) -> None:
    if held.lock_file is not None:
        held.lock_file.unlink(missing_ok=True)  # while still locked: see the check in _acquire
    os.close(held.fd)


@contextmanager
def hold_folder(folder: str | os.PathLike, what: str = "output folder") -> Iterator[Path]:
    """Hold the lock of `folder` for the block; RunFolderError (one line, naming the holder) if another
    process holds it. `what` names the setting in the message (e.g. "output_dir", "--out")."""
    folder = Path(folder)
    if fcntl is None:
        yield folder
        return
    key = str(lock_file(folder))
    with _guard:
        held = _held.get(key)
        if held is not None and held.pid == os.getpid():
            held.depth += 1
        else:  # not held, or held by the parent this process was forked from
            held = _held[key] = _acquire(folder, what)
    try:
        yield folder
    finally:
        with _guard:
            held.depth -= 1
            if held.depth == 0:
                _held.pop(key, None)
                _release(held)
