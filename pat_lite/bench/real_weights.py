"""Real weights for `pat-lite bench`: the embedded SmolLM2-135M (or a local checkpoint) and its narrower cut.

Speed does not depend on the weights' values, so the random-weight presets measure the shapes; this module
lets the same benchmark run on a real checkpoint, so a reader can see it on the model they will prune:
the dense checkpoint as loaded, and the narrower model sliced out of it (docs/method.md §8) into a
temporary folder: an ordinary dense model of hidden size d', as a PAT merge produces. The kept channels are
the d' channels with the largest writer norms (the untuned norm-criterion cut,
`pat_lite.baselines.norm.norm_cut`); any other choice of channels would time the same.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from pat_lite.baselines.norm import norm_cut
from pat_lite.bench.common import PRESETS, BenchConfigError

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
            from pat_lite.models.smollm2 import SMOLLM2_NAME, SmolLM2UnavailableError, ensure_smollm2
        except ImportError as err:
            raise BenchConfigError(
                f"real {name} weights need pat_lite.models.smollm2, which this installation lacks ({err}); "
                "use `--weights random` to time the shape with random weights"
            ) from err
        if SMOLLM2_NAME != EMBEDDED_REAL_MODEL:  # the two names must stay one name
            raise BenchConfigError(f"embedded model is {SMOLLM2_NAME!r}, the bench preset {name!r}")
        try:
            return Path(ensure_smollm2())
        except SmolLM2UnavailableError as err:
            raise BenchConfigError(f"{err} (or use `--weights random` to time the shape)") from err
    path = Path(name)
    if not (path / "config.json").is_file() or not any(path.glob("*.safetensors")):
        raise BenchConfigError(
            f"real weights need the embedded model ({EMBEDDED_REAL_MODEL}) or a local folder with "
            f"config.json and *.safetensors; {name!r} is neither (presets {', '.join(PRESETS)} are shapes "
            "only: use `--weights random`)"
        )
    return path


def save_real_variants(
    checkpoint: str | os.PathLike, widths: list[int], out_dir: str | os.PathLike, dtype: torch.dtype
) -> list[Path]:
    """The dense checkpoint and its norm cut (`pat_lite.baselines.norm.norm_cut`) at every width, saved in
    `dtype` under `out_dir`; returns [dense folder, one folder per width].

    The cut is made in float32 and then cast. Every model is stored in the dtype it will be timed in, so
    that loading it needs no conversion: a peak-memory pass would otherwise count the float32 file's pages
    and the cast copy together."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32, use_safetensors=True)
    name = str(dtype).removeprefix("torch.")
    paths = [Path(out_dir) / f"{name}-dense"]
    model.to(dtype).save_pretrained(paths[0], safe_serialization=True)
    model.float()
    for width in widths:
        paths.append(Path(out_dir) / f"{name}-w{width}")
        norm_cut(model, width).to(dtype).save_pretrained(paths[-1], safe_serialization=True)
    return paths
