"""Where pat_lite keeps what it builds once (the tiny base, the converted SmolLM2): the project cache."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """`cache_dir` if given, else `$PAT_LITE_CACHE`, else `~/.cache/pat_lite`."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("PAT_LITE_CACHE") or Path.home() / ".cache" / "pat_lite")
