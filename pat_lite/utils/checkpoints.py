"""Is this folder a model checkpoint we can load? Checked before any loader runs, so that a typo'd path, a
pat_lite run folder, a LoRA adapter or a truncated `model.safetensors` gets one line naming the path and
what to pass instead (not "Repo id must be in the form..." or a raw SafetensorError).

The safetensors check reads only each file's header: 8 bytes (the header's length), the JSON header, and
the file size, which must equal 8 + header + the end of the last tensor.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pat_lite.utils.errors import CheckpointError, PatLiteError

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


def _check_config_json(file: Path) -> None:
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise CheckpointError(f"{file} is not UTF-8 text (byte {error.start})") from None
    except ValueError as error:
        raise CheckpointError(f"{file} is not valid JSON ({error}); save the model again") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{file} holds a JSON {type(config).__name__}, not a model config (an object)")


def _shape_mismatches(folder: Path, limit: int = 2) -> str:
    """Which tensors of `folder`'s safetensors files have another shape than its config.json builds
    (read from the headers and a model built on the meta device: no weights are loaded)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {}
    for file in sorted(folder.glob("*.safetensors")):
        with open(file, "rb") as handle:
            header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
        found.update({k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"})
    wrong = [f"{k} is {list(found[k])} in the weights, {list(expected[k])} by the config"
             for k in sorted(found.keys() & expected.keys()) if found[k] != expected[k]]  # fmt: skip
    return "; ".join(wrong[:limit]) + (f" (and {len(wrong) - limit} more)" if len(wrong) > limit else "")


@contextmanager
def loading_errors(folder: str | os.PathLike | None) -> Iterator[None]:
    """Around a loader (from_pretrained, lm-eval's HFLM) of the local model folder `folder`: what the
    loader raises about the folder's files (a config that disagrees with the weights, a tokenizer that
    cannot be built, an unreadable file) becomes one CheckpointError naming the folder. For a hub name
    (`folder` None) nothing is translated."""
    try:
        yield
    except CheckpointError:
        raise
    except (OSError, ValueError, RuntimeError) as error:
        if folder is None or isinstance(error, PatLiteError):
            raise
        folder = Path(folder)
        text = " ".join(str(error).split())
        if "mismatched_sizes" in text or "size mismatch" in text:
            detail = _shape_mismatches(folder) or text
            raise CheckpointError(
                f"{folder}: config.json does not fit the weights ({detail}); save the model again"
            ) from error
        what = "tokenizer" if "tokenizer" in text.lower() else "model"
        raise CheckpointError(f"cannot load the {what} in {folder}: {text[:300]}") from error


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
    if (path / "config.json").exists():
        _check_config_json(path / "config.json")
    else:
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
