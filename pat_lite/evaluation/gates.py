"""The tiny base's quality gates (docs/method.md §10; the thresholds live in `TinyBaseRecipe`).

A base model is only useful for PAT if it knows something a hidden-size cut can take away. On both toy
evaluation splits (validation and test):

- the dense model reaches `min_retention` (90 %) on held-out facts, `min_skill` (85 %) on fresh skill items
  and `min_family` (75 %) on every family;
- its `cut_ratio` (25 %) norm cut — the channels of smallest writer norm zeroed, no tuning — loses at least
  `min_cut_drop` (15) points on each axis: otherwise pruning-aware tuning would have nothing to keep or
  recover.

The recipe is passed in as any object with those attributes, so this module needs nothing above the
evaluation layer.
"""

from __future__ import annotations

import copy
from typing import Any

from pat_lite.core.arch import width_for_ratio
from pat_lite.core.slicing import norm_channels, zero_hidden_channels
from pat_lite.data import toyworld
from pat_lite.evaluation.mc import chance_accuracy, toy_scores
from pat_lite.utils.errors import PatLiteError

__all__ = ["GateError", "check_gates", "gate_report", "norm_cut_complement"]


class GateError(PatLiteError, RuntimeError):
    """A built model missed a quality gate (the message gives the measured numbers)."""


def norm_cut_complement(model, ratio: float) -> list[int]:
    """The hidden channels a `ratio` norm cut removes: the complement of
    `pat_lite.core.slicing.norm_channels` at the width `width_for_ratio` gives (sorted)."""
    width = int(model.config.hidden_size)
    keep = set(norm_channels(model, width_for_ratio(model.config, ratio)).tolist())
    return [channel for channel in range(width) if channel not in keep]


def gate_report(model, tokenizer, world: toyworld.World, cut_ratio: float) -> dict[str, Any]:
    """Both axes of `model` and of its untuned `cut_ratio` norm cut (channels zeroed in a copy), on both
    evaluation splits of `world`."""
    items = {
        split: [it for family in toyworld.eval_items(world, split).values() for it in family]
        for split in toyworld.EVAL_SPLITS
    }
    pruned = copy.deepcopy(model)
    cut = norm_cut_complement(pruned, cut_ratio)
    zero_hidden_channels(pruned, cut)  # every writer of a channel zeroed: it is zero everywhere (§2)
    return {
        "chance": 100.0 * chance_accuracy(items["test"]),
        "base": {split: toy_scores(model, tokenizer, items=its) for split, its in items.items()},
        "cut": {split: toy_scores(pruned, tokenizer, items=its) for split, its in items.items()},
        "cut_ratio": cut_ratio,
        "cut_channels": cut,
    }


def check_gates(report: dict[str, Any], recipe: Any) -> list[str]:
    """The list of failed gates (empty = all pass), each with its measured number, on every split."""
    failed = []
    for split, base in report["base"].items():
        cut = report["cut"][split]
        for axis, floor in (("retention", recipe.min_retention), ("skill", recipe.min_skill)):
            if base[axis] < floor:
                failed.append(f"{split}: base {axis} {base[axis]:.1f} % < {floor} %")
            drop = base[axis] - cut[axis]
            if drop < recipe.min_cut_drop:
                failed.append(
                    f"{split}: a {recipe.cut_ratio:.0%} norm cut only drops {axis} by {drop:.1f} points "
                    f"({base[axis]:.1f} -> {cut[axis]:.1f} %) < {recipe.min_cut_drop}"
                )
        for fam, acc in base["per_family"].items():
            if acc < recipe.min_family:
                failed.append(f"{split}: base accuracy on {fam} = {acc:.1f} % < {recipe.min_family} %")
    return failed
