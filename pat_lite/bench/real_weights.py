"""Real weights for `pat-lite bench`: the embedded SmolLM2-135M (or a local checkpoint) and its narrower cut.

Speed does not depend on the weights' values, so the random-weight presets measure the shapes; this module
lets the same benchmark run on a real checkpoint, so a reader can see it on the model they will prune:
the dense checkpoint as loaded, and the narrower model made the way PAT makes one — `attach_pat` with a
fixed 0/1 mask, then `merge_pat` (docs/method.md §8) — into a temporary folder. The kept channels are the
`width` channels with the largest writer norms (the untuned "naive cut" of
`pat_lite.models.tinybase.crude_hidden_cut`); any other choice would time the same.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from pat_lite.bench.common import PRESETS, BenchConfigError
from pat_lite.core.attach import attach_pat, get_pat
from pat_lite.core.config import PATConfig
from pat_lite.core.merge import merge_pat

#: The preset whose name also means "the embedded real weights" (pat_lite.models.smollm2.SMOLLM2_NAME).
EMBEDDED_REAL_MODEL = "smollm2-135m"
WEIGHTS = ("auto", "random", "real")


def wants_real_weights(name: str, weights: str) -> bool:
    """`weights`: "random", "real", or "auto" (real for the embedded model's name, random otherwise)."""
    if weights not in WEIGHTS:
        raise BenchConfigError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    return weights == "real" or (weights == "auto" and name == EMBEDDED_REAL_MODEL)


def real_checkpoint(name: str) -> Path:
    """The folder holding real weights for `name`: the embedded model (converted once, then cached) or a
    local checkpoint folder with config.json and safetensors weights."""
    if name == EMBEDDED_REAL_MODEL:
        try:
            from pat_lite.models.smollm2 import SMOLLM2_NAME, ensure_smollm2
        except ImportError as err:
            raise BenchConfigError(
                f"real {name} weights need pat_lite.models.smollm2, which this installation lacks ({err}); "
                "use `--weights random` to time the shape with random weights"
            ) from err
        if SMOLLM2_NAME != EMBEDDED_REAL_MODEL:  # the two names must stay one name
            raise BenchConfigError(f"embedded model is {SMOLLM2_NAME!r}, the bench preset {name!r}")
        return Path(ensure_smollm2())
    path = Path(name)
    if not (path / "config.json").is_file() or not any(path.glob("*.safetensors")):
        raise BenchConfigError(
            f"real weights need the embedded model ({EMBEDDED_REAL_MODEL}) or a local folder with "
            f"config.json and *.safetensors; {name!r} is neither (presets {', '.join(PRESETS)} are shapes "
            "only: use `--weights random`)"
        )
    return path


def writer_norm_keep_mask(model: torch.nn.Module, width: int) -> torch.Tensor:
    """A 0/1 float mask keeping the `width` channels with the largest writer-weight norms."""
    import copy

    from pat_lite.models.tinybase import crude_hidden_cut

    hidden = int(model.config.hidden_size)
    # crude_hidden_cut zeroes the cut channels in place: give it a throwaway copy and keep its answer only
    cut = crude_hidden_cut(copy.deepcopy(model), (hidden - width) / hidden)
    keep = torch.ones(hidden)
    keep[cut] = 0.0
    if int(keep.sum()) != width:
        raise RuntimeError(f"writer-norm cut kept {int(keep.sum())} channels, wanted {width}")
    return keep


def narrowed_model(model: torch.nn.Module, keep: torch.Tensor) -> torch.nn.Module:
    """`merge_pat` of `model` with PAT attached at init (D = I, s = 1) and the fixed mask `keep`.

    The result is an ordinary dense model of width keep.sum() whose logits equal those of `model` with the
    dropped channels zeroed after every residual writer (exact, docs/method.md §8). `model` is consumed."""
    width = int(keep.sum())
    attach_pat(model, PATConfig(target_width=width, pruning_ratio=None, hio_rank=1))
    with torch.no_grad():
        get_pat(model).mask.proxies.copy_(keep * 2.0 - 1.0)  # W_M > 0 exactly on the kept channels
    model.eval()
    return merge_pat(model, inplace=True)


def save_narrowed(checkpoint: str | os.PathLike, widths: list[int], out_dir: str | os.PathLike) -> list[Path]:
    """Save the writer-norm cut of `checkpoint` at every width under `out_dir`/w<width>; one folder each.

    Merged in float32 from a fresh fp32 load per width (the timing runs load them in their own dtype)."""
    from transformers import AutoModelForCausalLM

    paths = []
    for width in widths:
        model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32, use_safetensors=True)
        merged = narrowed_model(model, writer_norm_keep_mask(model, width))
        path = Path(out_dir) / f"w{width}"
        merged.save_pretrained(path, safe_serialization=True)
        paths.append(path)
        del model, merged
    return paths
