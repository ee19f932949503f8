"""Where pat_lite keeps what it builds once (the tiny base, the converted SmolLM2): the project cache."""

from __future__ import annotations

import os
from pathlib import Path

from pat_lite.utils.errors import CheckpointError


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """`cache_dir` if given, else `$PAT_LITE_CACHE`, else `~/.cache/pat_lite`."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("PAT_LITE_CACHE") or Path.home() / ".cache" / "pat_lite")


def writable_cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """`cache_root(cache_dir)`, created if needed; one line naming it when it cannot be written (checked
    before any work that would write there)."""
    root = cache_root(cache_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CheckpointError(
            f"cannot create the pat_lite cache {root} ({error.strerror}): point PAT_LITE_CACHE at a "
            "writable folder"
        ) from error
    if not os.access(root, os.W_OK | os.X_OK):
        raise CheckpointError(
            f"the pat_lite cache {root} is not writable: make it writable, or point PAT_LITE_CACHE at a "
            "writable folder"
        )
    return root
