"""Atomic writes: a reader (or a restarted run) sees the old file/folder or the new one, never half of one.

Temporary siblings are named `.<name>.tmp-<pid>-<random>` and replaced folders are moved aside to
`.<name>.old` before they are deleted; a killed process can leave such names behind, and `leftovers`
finds them so that the next run can clear them. Folders are created with `os.mkdir`, so they get the
permissions the umask gives (not `tempfile.mkdtemp`'s 0700); files are given them too (`follow_umask`):
safetensors writes its files 0600 whatever the umask, which would keep a group from loading a model.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

TMP_MARK = ".tmp-"
ASIDE_SUFFIX = ".old"


def current_umask() -> int:
    """This process's umask (read without changing it where the OS allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere the only way to read it is to set it (and put it back at once)
    os.umask(mask)
    return mask


def follow_umask(path: str | os.PathLike) -> None:
    """Give the file `path`, or every file under the folder `path`, the mode a plain `open` would give it
    under the umask (0644 for 022): what safetensors and other writers restrict is made readable again."""
    path = Path(path)
    mode = 0o666 & ~current_umask()
    for file in path.rglob("*") if path.is_dir() else [path]:
        if file.is_file() and not file.is_symlink() and (file.stat().st_mode & 0o777) != mode:
            os.chmod(file, mode)


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


def aside_path(final: str | os.PathLike) -> Path:
    """Where `replace_directory` moves an existing folder before it deletes it."""
    final = Path(final)
    return final.with_name(f".{final.name}{ASIDE_SUFFIX}")


def leftovers(folder: str | os.PathLike) -> list[Path]:
    """Temporary and moved-aside entries in `folder` that a killed writer left behind."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    names = (p for p in folder.iterdir() if p.name.startswith("."))
    return sorted(p for p in names if TMP_MARK in p.name or p.name.endswith(ASIDE_SUFFIX))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to a temporary sibling, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def replace_directory(new: str | os.PathLike, final: str | os.PathLike) -> Path:
    """Move the complete folder `new` into place as `final`.

    An existing `final` is first moved aside (`aside_path`) and deleted only once `new` is in place, so at
    every moment one complete version exists under `final` or its aside name."""
    new, final = Path(new), Path(final)
    aside = aside_path(final)
    if aside.exists():  # an earlier replacement was interrupted after moving its old folder aside
        shutil.rmtree(aside)
    if final.exists():
        os.replace(final, aside)
    os.replace(new, final)
    shutil.rmtree(aside, ignore_errors=True)
    return final


def atomic_directory(final: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Fill a temporary sibling folder with `write(tmp)`, then move it into place as `final`.

    An existing `final` is replaced only after `write` succeeded; on an error nothing of it is left."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(final)
    tmp.mkdir()
    try:
        write(tmp)
        follow_umask(tmp)
        replace_directory(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def atomic_write_file(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Let `write(tmp)` create a temporary sibling file (any format), then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        follow_umask(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
