"""One base class for the errors a user can fix: a wrong setting, a missing or broken file, bad data.

`pat-lite` prints such an error as one line (`pat-lite: error: ...`) without a traceback (`--debug` shows
it); anything else is a bug and keeps its traceback. Each subclass also derives from the built-in exception
it refines, so `except ValueError` / `except FileExistsError` keep working.
"""

from __future__ import annotations


class PatLiteError(Exception):
    """Something the user asked for cannot be done; the message says what is wrong and how to fix it."""


class ConfigError(PatLiteError, ValueError):
    """A setting with a wrong type or value, or a config file that cannot be read."""


class DataError(PatLiteError, ValueError):
    """Instruction or evaluation data that cannot be used (the message names the file and the record)."""


class CheckpointError(PatLiteError, OSError):
    """A model folder that is missing, incomplete or corrupted."""


class RunFolderError(PatLiteError, FileExistsError):
    """An output folder that this run may not use as it is (a finished run, someone else's files, a folder
    another command is writing, a location that cannot be written...)."""


class OutputError(PatLiteError, OSError):
    """A location that cannot be written (read-only, under a file), or a disk that filled up while writing."""


class NumericalError(PatLiteError, ArithmeticError):
    """A model whose logits or losses are not finite (NaN or infinity): broken weights or a diverged run."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what the user can do next (e.g. re-run the same command to resume).

    A KeyboardInterrupt, not an error: `except Exception` does not swallow it; `pat-lite` prints its
    message as one line and exits with status 130 (the shell's code for SIGINT)."""


def one_line(text: object) -> str:
    """`text` with its whitespace runs (newlines included) collapsed: error messages stay on one line."""
    return " ".join(str(text).split())
