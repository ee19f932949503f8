"""Is this folder a model checkpoint we can load? Checked before any loader runs, so that a typo'd path, a
pat_lite run folder, a LoRA adapter or a truncated `model.safetensors` gets one line naming the path and
what to pass instead (not "Repo id must be in the form..." or a raw SafetensorError).

The safetensors check reads only each file's header: 8 bytes (the header's length), the JSON header, and
the file size, which must equal 8 + header + the end of the last tensor.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pat_lite.utils.errors import CheckpointError

#: What a pat_lite run folder holds (see pat_lite.training.run): the merged model and the adapter.
RUN_MERGED, RUN_ADAPTER = "merged", "adapter"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


def looks_like_path(name: str) -> bool:
    """True for what can only be a file system path; hub ids are "name" or "owner/name"."""
    return name.startswith(("/", ".", "~")) or name.endswith("/") or name.count("/") > 1 or "\\" in name


def safetensors_problem(file: str | os.PathLike) -> str | None:
    """Why `file` is not a complete safetensors file, or None if its header and size agree."""
    file = Path(file)
    size = file.stat().st_size
    with open(file, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return f"only {size} bytes, shorter than a safetensors header"
        length = int.from_bytes(head, "little")
        if length > size - 8:
            return "its header claims more bytes than the file has (truncated, or not safetensors)"
        try:
            header = json.loads(handle.read(length))
            ends = [int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"]
        except (ValueError, TypeError, KeyError, IndexError):
            return "its header is not valid safetensors metadata"
    expected = 8 + length + max(ends, default=0)
    if expected != size:
        return f"{size} bytes where its header describes {expected} (truncated or padded)"
    return None


def check_model_folder(name_or_path: str | os.PathLike, accept_run_folder: bool = False) -> Path | None:
    """The local model folder `name_or_path` names, checked; None when it is a hub id (not a local path).

    `accept_run_folder`: a pat_lite run folder stands for its `merged/` model (evaluation); otherwise the
    error says to pass `<run>/merged`. Raises CheckpointError naming the path and what would work."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if not path.exists():
        if looks_like_path(text) or isinstance(name_or_path, Path):
            raise CheckpointError(f"no model folder at {text}: no such file or folder")
        return None
    if not path.is_dir():
        raise CheckpointError(f"{path} is a file; a model is a folder with config.json and *.safetensors")
    if not (path / "config.json").exists():
        merged = path / RUN_MERGED
        if (merged / "config.json").exists():
            if accept_run_folder:
                return check_model_folder(merged)
            raise CheckpointError(f"{path} is a pat_lite run folder, not a model: use {merged}")
        if (path / "adapter_config.json").exists():
            run = path.parent
            hint = f"use the run's merged model {run / RUN_MERGED}" + (
                f" (or the run folder {run})" if accept_run_folder else ""
            )
            raise CheckpointError(f"{path} is a LoRA/PAT adapter, not a whole model: {hint}")
        if (path / RUN_ADAPTER).is_dir():
            raise CheckpointError(
                f"{path} is a pat_lite run folder without {RUN_MERGED}/ (unfinished, or trained with "
                "merge=false): finish it by re-running its training command"
            )
        raise CheckpointError(f"{path} is not a model folder: it has no config.json")
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        extra = " (it has pickle .bin weights, which pat_lite never loads)" if any(path.glob("*.bin")) else ""
        raise CheckpointError(f"{path} holds no *.safetensors weights{extra}")
    for file in weights:
        if problem := safetensors_problem(file):
            raise CheckpointError(f"{file} is corrupted or incomplete: {problem}; copy or save it again")
    if not any((path / name).exists() for name in TOKENIZER_FILES):
        wanted = ", ".join(TOKENIZER_FILES)
        raise CheckpointError(f"{path} has no tokenizer ({wanted}); save the tokenizer beside the model")
    return path
