"""The residual stream as data: its statistics on calibration text, and rotations of it (exact).

PAT prunes the residual stream's channels (docs/method.md §2). Which channels carry the stream, and in
which basis, is measured here, once for everyone who needs it: PAT's informed starts (`PATConfig.mask_init
= "energy"`, `basis = "pca"`: our extensions, not the paper's), the SliceGPT-style PCA baseline
(`pat_lite.baselines.pca`) and the diagnostics of a finished run.

**Where the stream is read.** It is read at 2L + 1 places — the input of every RMSNorm (2 per layer and the
final one) — and normalised there before any reader sees it. So every token at every read site contributes
its direction u = h/‖h‖ with the same weight: the second moment is Σ u·uᵀ over read sites and (unpadded)
tokens. Dropping a direction then costs each reader input the same relative share, and neither the deeper
layers (whose stream norms grow) nor the few tokens with huge activations dominate. Its diagonal is each
channel's *activation energy*; its eigenvectors are the stream's PCA basis.

**Why a rotation is exact.**

1. Fold every RMSNorm weight into the linears that read through it: W_in ← W_in · diag(g) for q/k/v
   (after input_layernorm), gate/up (after post_attention_layernorm) and lm_head (after the final norm);
   then g ← 1 (Gemma, whose norm multiplies by (1 + w): fold 1 + w, then w ← 0). Same outputs: the norm's
   scale moved into the next matrix. What is left of the norm, x / rms(x), commutes with any orthogonal
   Q: rms(Qᵀx) = rms(x), because ‖Qᵀx‖ = ‖x‖ and the width d is unchanged.
2. Rotate the residual stream by an orthogonal Q (d × d): every stream state h becomes h̃ = Qᵀh. The
   writers emit Qᵀ·(their output): E ← E·Q (E's rows are the token vectors; Gemma's sqrt(d) scaling
   commutes), W_out ← Qᵀ·W_out and b_out ← Qᵀ·b_out for o_proj and down_proj. The residual additions are
   linear, so every later state is rotated too. The readers get W_in ← W_in·Q and compute
   W_in·Q·Qᵀh / rms(h) = W_in·h / rms(h): the same attention and MLP inputs, the same logits.

With Q the PCA basis (eigenvectors by decreasing eigenvalue), channel i of the rotated model is the i-th
principal direction, and its activation energy is the i-th eigenvalue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
from transformers import PreTrainedModel

from pat_lite.core.arch import arch_spec
from pat_lite.core.slicing import Fold, ResidualRole, check_plain_model, slice_hidden

#: A calibration set: one batch or an iterable of batches; a batch is a LongTensor of token ids (batch ×
#: length) or a mapping with "input_ids" and optionally "attention_mask" (other keys are ignored).
Calibration = torch.Tensor | Mapping[str, torch.Tensor] | Iterable[torch.Tensor | Mapping[str, torch.Tensor]]


def calibration_pairs(calibration: Calibration) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The calibration set as `(input_ids, attention_mask)` pairs, batch × length each; a clear error for
    anything else."""
    single = isinstance(calibration, torch.Tensor | Mapping)
    batches = []
    for batch in [calibration] if single else list(calibration):
        if isinstance(batch, Mapping):
            if "input_ids" not in batch:
                raise ValueError(f"a calibration batch needs input_ids; it has {sorted(batch)}")
            ids, attention = batch["input_ids"], batch.get("attention_mask")
        elif isinstance(batch, torch.Tensor):
            ids, attention = batch, None
        else:
            raise ValueError(f"a calibration batch is token ids or a mapping with input_ids, not {batch!r}")
        ids = ids if ids.dim() == 2 else ids.unsqueeze(0)
        batches.append((ids, torch.ones_like(ids) if attention is None else attention))
    if not batches:
        raise ValueError("the calibration set is empty: give at least one batch of token ids")
    return batches


def visit_residual_reads(
    model: PreTrainedModel, calibration: Calibration, visit: Callable[[torch.Tensor], None]
) -> None:
    """Run the calibration batches and call `visit(states)` at every read site of the residual stream (the
    input of every RMSNorm: 2 per layer and the final one) with that site's unpadded tokens × d states."""
    decoder = model.model
    device = next(model.parameters()).device
    current: dict[str, torch.Tensor] = {}

    def record(module: torch.nn.Module, args: tuple) -> None:
        visit(args[0][current["attention"]])

    norms = [decoder.norm]
    for layer in decoder.layers:
        norms += [layer.input_layernorm, layer.post_attention_layernorm]
    handles = [norm.register_forward_pre_hook(record) for norm in norms]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for ids, attention in calibration_pairs(calibration):
                current["attention"] = attention.to(device).bool()
                model(input_ids=ids.to(device), attention_mask=attention.to(device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)


def residual_second_moment(model: PreTrainedModel, calibration: Calibration) -> torch.Tensor:
    """Σ u·uᵀ (float64, d × d) over every read site of the residual stream and every unpadded token of
    the calibration batches, u = h/‖h‖ (pooling: module docstring)."""
    width = int(model.config.hidden_size)
    device = next(model.parameters()).device
    moment = torch.zeros(width, width, dtype=torch.float64, device=device)

    def accumulate(states: torch.Tensor) -> None:
        states = states.double()
        directions = states / states.norm(dim=-1, keepdim=True).clamp_min(1e-30)
        moment.add_(directions.T @ directions)

    visit_residual_reads(model, calibration, accumulate)
    return moment


def pca_rotation(model: PreTrainedModel, calibration: Calibration) -> tuple[torch.Tensor, torch.Tensor]:
    """`(Q, variances)`: the orthogonal PCA basis of the residual stream (float64, columns by decreasing
    eigenvalue of `residual_second_moment`, each column's largest entry made positive so that the basis
    does not depend on the eigensolver's signs) and the eigenvalues, as fractions of their sum."""
    check_plain_model(model)
    moment = residual_second_moment(model, calibration)
    values, vectors = torch.linalg.eigh(moment)
    values, vectors = values.flip(0), vectors.flip(1)
    peak = vectors.abs().argmax(0)
    signs = torch.sign(vectors[peak, torch.arange(vectors.shape[1])])
    vectors = vectors * torch.where(signs == 0, 1.0, signs)
    return vectors, (values.clamp_min(0) / values.clamp_min(0).sum()).cpu()


def residual_energy(model: PreTrainedModel, calibration: Calibration) -> torch.Tensor:
    """Each channel's activation energy: the diagonal of `residual_second_moment`, as fractions of its
    trace (float64, sums to 1)."""
    diagonal = residual_second_moment(model, calibration).diagonal().cpu()
    return diagonal / diagonal.sum()


def rotation_fold(model: PreTrainedModel, rotation: torch.Tensor) -> Fold:
    """Steps 1-2 of the module docstring as a `Fold` for `slice_hidden`: norms folded into the readers,
    the stream rotated by `rotation` (d × d orthogonal). Computed in float64."""
    offset = arch_spec(model.config).norm_weight_offset
    state = model.state_dict()
    device = next(model.parameters()).device
    q = rotation.to(device=device, dtype=torch.float64)

    def fold(key: str, role: ResidualRole, value: torch.Tensor) -> torch.Tensor:
        value = value.double()
        if role.kind == "embedding":
            out = value @ q
        elif role.kind == "writer":
            out = q.T @ value
        elif role.kind == "reader":
            scale = state[role.norm].double() + offset  # the norm's effective weight g (Gemma: 1 + w)
            out = (value * scale) @ q
        elif role.kind == "norm":
            out = torch.full_like(value, 1.0 - offset)  # effective weight 1
        else:
            out = value
        return out.float()

    return fold


def rotate_residual(model: PreTrainedModel, rotation: torch.Tensor) -> PreTrainedModel:
    """The same model with its norms folded and its residual stream rotated by `rotation` (full width,
    untied embeddings): the same logits for any orthogonal `rotation`, up to rounding."""
    check_plain_model(model)
    return slice_hidden(model, range(int(model.config.hidden_size)), fold=rotation_fold(model, rotation))
