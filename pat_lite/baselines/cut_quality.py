"""How good was the choice? The untuned base with exactly a method's cut, beside reference cuts.

A pruned model's final score mixes two things: how good the cut was (which channels or directions were
kept) and how much tuning recovered afterwards. This module measures the first one apart: the base model,
*untuned*, with one cut applied exactly (`slice_hidden`: the kept channels of the coordinate basis, or of
a rotated basis for the PCA slice and PAT in the PCA basis), scored by the suite's yardstick (SmolLM2: the
held-out loss of `pat_lite.evaluation.heldout_loss`; the toy: the toy average accuracy), and the share
of the residual stream's energy the cut keeps (`pat_lite.core.residual`).

Reference cuts at the same width, all chosen on the suite's calibration text (the first tuning records):

- `random` — uniformly drawn channel sets (several draws: mean ± std);
- `norm` — the largest writer norms (the prune-ft-norm baseline's cut);
- `energy` — the largest activation energies (the diagonal of the residual second moment);
- `gradient` — the first-order task signal PAT's mask sees at step 0: attach PAT with W_M = 0, one
  backward pass of the LM loss per calibration batch, keep the channels whose summed ∂L/∂W_M is most
  negative (those the first update raises);
- `fisher` — the same gradients squared and summed (empirical Fisher of the channel gates);
- `pca` — the top principal directions of the residual stream (the prune-ft-pca baseline's slice).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from pat_lite.core.attach import attach_pat, get_pat, set_pat_step
from pat_lite.core.config import PATConfig
from pat_lite.core.mask import top_channels
from pat_lite.core.residual import (
    Calibration,
    calibration_pairs,
    pca_rotation,
    residual_second_moment,
    rotation_fold,
)
from pat_lite.core.slicing import check_plain_model, norm_channels, slice_hidden

__all__ = ["Cut", "apply_cut", "energy_kept", "reference_cuts", "score_cuts"]

REFERENCE_KINDS = ("random", "norm", "energy", "gradient", "fisher", "pca")


@dataclass(frozen=True)
class Cut:
    """`kept` channels (sorted) of the basis `rotation` (None: the model's own coordinates; otherwise an
    orthogonal d × d matrix whose columns are the basis)."""

    name: str
    kept: tuple[int, ...]
    rotation: torch.Tensor | None = None


def apply_cut(model: PreTrainedModel, cut: Cut) -> PreTrainedModel:
    """The untuned `model` with only `cut` kept: a new, narrower plain model (exact, `slice_hidden`)."""
    fold = rotation_fold(model, cut.rotation) if cut.rotation is not None else None
    return slice_hidden(model, list(cut.kept), fold=fold)


def energy_kept(moment: torch.Tensor, cut: Cut) -> float:
    """The share of the residual stream's energy (trace of the second moment `moment`) in the kept
    directions of `cut`."""
    moment = moment.double().cpu()
    if cut.rotation is not None:
        q = cut.rotation.double().cpu()
        diagonal = (q.T @ moment @ q).diagonal()
    else:
        diagonal = moment.diagonal()
    return float(diagonal[list(cut.kept)].sum() / moment.trace())


def _gate_gradients(model: PreTrainedModel, calibration: Calibration) -> list[torch.Tensor]:
    """∂L/∂W_M per calibration batch at PAT's step 0 (W_M = 0, every gate 1), L the LM loss of the batch."""
    work = copy.deepcopy(model)
    attach_pat(work, PATConfig(hio_rank=1))  # HSMs at identity; only the mask's gradient is read
    work.train()
    set_pat_step(work, 0, total_steps=30)
    for name, param in work.named_parameters():
        param.requires_grad_(name == "pat.mask.proxies")
    proxies = get_pat(work).mask.proxies
    gradients = []
    for ids, attention in calibration_pairs(calibration):
        labels = ids.masked_fill(attention == 0, -100)
        proxies.grad = None
        work(input_ids=ids, attention_mask=attention, labels=labels).loss.backward()
        gradients.append(proxies.grad.detach().clone().cpu())
    return gradients


def reference_cuts(
    model: PreTrainedModel, calibration: Calibration, width: int, random_draws: int = 5, seed: int = 0
) -> list[Cut]:
    """The reference cuts of the module docstring at `width`, random ones first (`random-0`, ...)."""
    check_plain_model(model)
    hidden = int(model.config.hidden_size)
    generator = torch.Generator().manual_seed(seed)
    cuts = [
        Cut(f"random-{draw}", tuple(sorted(torch.randperm(hidden, generator=generator)[:width].tolist())))
        for draw in range(random_draws)
    ]
    moment = residual_second_moment(model, calibration)
    gradients = _gate_gradients(model, calibration)
    scores = {
        "norm": None,
        "energy": moment.diagonal().float().cpu(),
        "gradient": -torch.stack(gradients).sum(0),
        "fisher": torch.stack(gradients).pow(2).sum(0),
    }
    for name, score in scores.items():
        kept = norm_channels(model, width) if score is None else top_channels(score, width)
        cuts.append(Cut(name, tuple(kept.tolist())))
    rotation, _ = pca_rotation(model, calibration)
    cuts.append(Cut("pca", tuple(range(width)), rotation.float()))
    return cuts


def score_cuts(
    model: PreTrainedModel,
    cuts: list[Cut],
    score: Callable[[PreTrainedModel], float],
    moment: torch.Tensor,
) -> dict[str, dict[str, float]]:
    """`{cut name: {"score": score(untuned model with the cut), "energy_kept": ...}}`."""
    results = {}
    for cut in cuts:
        narrow = apply_cut(model, cut)
        results[cut.name] = {"score": float(score(narrow.eval())), "energy_kept": energy_kept(moment, cut)}
        del narrow
    return results
