"""Where a command writes: checked before any work, held while it writes, and a full disk in one line.

Every command that writes a folder (`train`, `eval --out-dir`, `bench --out`, `bench-train --out`,
`build-tiny-base --out`, `demo`, `reproduce --out`) starts with `writing_to(path, what)`, and one that
writes a single report file (`gpu-check --out`) with `output_file_location`:

- `output_location` refuses, in one line naming the setting, a location that cannot be a folder (`.`,
  `..`, the current folder or one above it, an existing file, a path under a file) or cannot be written
  (read-only file system or permissions); a symlink stands for its target, which is what gets written;
- `pat_lite.utils.locks.hold_folder` then holds the folder, so that a second command on it is refused.

`no_space_error` turns a write that failed because the disk is full (errno ENOSPC, or torch's zip writer,
which reports only "unexpected pos ...") into one line naming the folder and the free space.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pat_lite.utils.errors import OutputError, RunFolderError
from pat_lite.utils.locks import hold_folder

#: OS errors that mean "the disk (or the user's quota) is full".
NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_NO_SPACE_WORDS = ("no space left on device", "disk quota exceeded", "storagefull")
#: torch's zip writer reports a failed write as a position mismatch, without the OS error behind it: taken
#: for a full disk when the disk is (nearly) full.
_FAILED_WRITE_WORDS = ("unexpected pos", "pytorchstreamwriter failed writing")
NEARLY_FULL_BYTES = 64 * 2**20


def output_location(path: str | os.PathLike, what: str = "output folder") -> Path:
    """The folder to write for `path` (a symlink's target; otherwise `path` as given), checked: one line
    (RunFolderError / OutputError) for what cannot be a folder or cannot be written. Reads only."""
    text = str(path)
    given = Path(text).expanduser()
    if not text.strip() or given.name in ("", ".", ".."):
        raise RunFolderError(
            f"{what}={text!r} is not a folder of its own: give the name of the folder to write, e.g. runs/x"
        )
    target = Path(os.path.realpath(given)) if given.is_symlink() else given
    absolute = Path(os.path.realpath(target))
    here = Path(os.path.realpath(Path.cwd()))
    if absolute == here or absolute in here.parents:
        raise RunFolderError(
            f"{what}={text} is the current folder or a folder above it: give a folder of its own, e.g. runs/x"
        )
    if target.exists() and not target.is_dir():
        raise RunFolderError(f"{what} {text} is a file, not a folder; choose another {what}")
    _check_writable(target, text, what)
    return target


def output_file_location(path: str | os.PathLike, what: str = "output file") -> Path:
    """The file `path` (a report a command writes at its end), checked before any work: not a folder, in
    a folder that exists or can be created, and can be written. Reads only."""
    file = Path(str(path)).expanduser()
    if not str(path).strip() or file.is_dir():
        raise OutputError(f"{what} {str(path)!r} is a folder, not a file: give a file name, e.g. report.json")
    _check_writable(file.parent, str(path), what)
    return file


def _check_writable(target: Path, text: str, what: str) -> None:
    """`target` (a folder) exists and can be written, or can be created: its nearest existing part is a
    writable folder. One line (OutputError) otherwise."""
    existing = target
    while not existing.exists():  # the nearest part of the path that exists: the folder, or a parent
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot create {what} {text}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(
            f"cannot write {what} {text}: {existing} is read-only here; choose a writable location"
        )


@contextmanager
def writing_to(path: str | os.PathLike, what: str = "output folder") -> Iterator[Path]:
    """`output_location(path)`, held (`hold_folder`) for the block: the one way a command claims where
    it writes. Yields the folder to write."""
    folder = output_location(path, what)
    with hold_folder(folder, what):
        yield folder


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def free_bytes(folder: str | os.PathLike) -> int | None:
    """Free space on the disk holding `folder` (or its nearest existing parent), None if unknown."""
    where = Path(folder)
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        return shutil.disk_usage(where).free
    except OSError:
        return None


def is_no_space(error: BaseException, folder: str | os.PathLike) -> bool:
    """True if `error` (or what caused it) is a write that failed because the disk of `folder` is full."""
    for cause in _chain(error):
        if isinstance(cause, OSError) and cause.errno in NO_SPACE_ERRNOS:
            return True
        text = str(cause).lower()
        if any(words in text for words in _NO_SPACE_WORDS):
            return True
        if any(words in text for words in _FAILED_WRITE_WORDS):
            free = free_bytes(folder)
            return free is not None and free < NEARLY_FULL_BYTES
    return False


def _size(n: int | None) -> str:
    if n is None:
        return "unknown space"
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def no_space_error(
    folder: str | os.PathLike, doing: str, then: str = "run the same command again"
) -> OutputError:
    """One line: the disk of `folder` is full (with its free space) while `doing`; free space, then `then`."""
    return OutputError(
        f"no space left on the disk holding {folder} ({_size(free_bytes(folder))} free) while {doing}: "
        f"free some space (or choose a folder on another disk), then {then}"
    )
