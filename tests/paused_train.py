"""`pat-lite train`, held at one optimizer step until a file appears: for tests of what a second command,
SIGKILL or Ctrl-C meets in the middle of a run (tests/run_helpers.PausedTrain).

    python tests/paused_train.py STEP MARKER GATE <pat-lite train arguments>

At the end of optimizer step STEP it creates MARKER, then waits until GATE exists. Everything else is the
real command: the folder's lock and lifecycle, the one-line errors, the exit status.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from transformers import TrainerCallback

import pat_lite.training.run as run_module
from pat_lite import cli


class Pause(TrainerCallback):
    def __init__(self, step: int, marker: Path, gate: Path) -> None:
        self.step, self.marker, self.gate = step, marker, gate

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            self.marker.touch()
            while not self.gate.exists():
                time.sleep(0.05)


def main() -> int:
    # Ctrl-C as in a terminal: a test runner started in the background (`cmd &` in a script) hands its
    # children SIGINT ignored, and Python then installs no KeyboardInterrupt handler of its own.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    step, marker, gate, *arguments = sys.argv[1:]
    pause = Pause(int(step), Path(marker), Path(gate))
    real = run_module.PATTrainer

    class Paused(real):
        def __init__(self, *args, **kwargs):
            kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), pause]
            super().__init__(*args, **kwargs)

    run_module.PATTrainer = Paused
    return cli.main(["train", *arguments])


if __name__ == "__main__":
    sys.exit(main())
