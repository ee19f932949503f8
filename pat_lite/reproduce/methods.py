"""The methods the study compares, each as one recipe on the same data, steps and LoRA (docs/method.md §9).

A method is one of three shapes:

- **tune only** (`dense` is the untouched base, `lora` the paper's full-width baseline);
- **prune → tune**: cut the base to width d' first (`norm`: the channels of smallest writer norm; `pca`: a
  SliceGPT-style rotation of the residual stream, keeping the top d' principal directions), then LoRA;
- **tune → prune**: the LoRA run of the same seed and learning rate, then the cut, no further tuning;
- **PAT** and its variants: pruning *while* tuning, through the normal `train()` path with PAT settings.

Our own variants (`OUR_VARIANTS`, docs/method.md §12) change where W_M starts (`pat-energy-start`), the
basis PAT prunes in (`pat-pca`, `pat-pca-zero`) or fix the kept set from s0 (`pat-fixed-from-s0`); the
paper's PAT (`pat`) stays the reference row.

`prune-ft-norm-hsm` is the fixed norm cut tuned with LoRA *and* trainable HSMs (PAT's machinery with a
mask that is 0/1 on the norm set from step 0): it separates what PAT's learned mask and soft phase add
beyond the HSMs' extra capacity. `prune-ft-pca-hsm` is the same in the PCA basis (the PCA slice as a 0/1
mask from step 0, with HSMs): between `prune-ft-pca` and `pat-pca`, it separates what the HSMs add from
what `pat-pca`'s gradual fade before s0 adds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pat_lite.utils.errors import ConfigError


@dataclass(frozen=True)
class Method:
    """How one method turns the base model into the evaluated model."""

    name: str
    description: str
    #: Training overrides (TrainConfig keys, dotted for the pat section); None: no tuning of its own.
    train: dict[str, Any] | None = None
    #: Cut the base before tuning ("norm" or "pca").
    prune_before: str | None = None
    #: Cut the tuned model of `tuned_from` afterwards ("norm" or "pca"), no further tuning.
    prune_after: str | None = None
    tuned_from: str | None = None
    #: Whether the evaluated model is narrower than the base (False for dense and lora).
    pruned: bool = True
    #: Whether the ratio applies through PAT's own `pat.pruning_ratio`.
    pat_ratio: bool = field(default=False)

    @property
    def uses_learning_rate(self) -> bool:
        return self.train is not None or self.tuned_from is not None


def _pat(name: str, description: str, **overrides: Any) -> Method:
    return Method(name, description, train={"method": "pat", **overrides}, pat_ratio=True)


_FIXED: list[Method] = [
    Method("dense", "the base model, untuned", pruned=False),
    Method(
        "lora", "LoRA on the full-width model (the paper's baseline)", train={"method": "lora"}, pruned=False
    ),
    Method(
        "prune-ft-norm", "smallest-writer-norm cut, then LoRA", train={"method": "lora"}, prune_before="norm"
    ),
    Method(
        "prune-ft-pca", "SliceGPT-style PCA slice, then LoRA", train={"method": "lora"}, prune_before="pca"
    ),
    _pat(
        "prune-ft-norm-hsm",
        "the same fixed norm cut, tuned with LoRA and trainable HSMs",
        **{"pat.mask_mode": "fixed", "pat.fixed_channels": "norm"},
    ),
    _pat(
        "prune-ft-pca-hsm",
        "the PCA slice as a fixed 0/1 mask in the PCA basis from step 0, tuned with LoRA and trainable HSMs",
        **{"pat.basis": "pca", "pat.mask_mode": "fixed", "pat.fixed_channels": "energy"},
    ),
    Method(
        "ft-prune-norm", "LoRA, then the norm cut, no further tuning", prune_after="norm", tuned_from="lora"
    ),
    Method(
        "ft-prune-pca", "LoRA, then the PCA slice, no further tuning", prune_after="pca", tuned_from="lora"
    ),
    _pat("pat", "PAT with the project's defaults"),
    _pat(
        "pat-schedule-released",
        "PAT, released schedule (tau frozen at 0.8 s0)",
        **{"pat.schedule": "released"},
    ),
    _pat("pat-schedule-paper", "PAT, the paper's Eq. 6 (exact mask from s0)", **{"pat.schedule": "paper"}),
    _pat(
        "pat-frozen", "PAT with the frozen-mask ablation (docs/method.md §6)", **{"pat.mask_mode": "frozen"}
    ),
    _pat("pat-no-identity", "PAT without the identity loss", **{"pat.identity_loss": "off"}),
    _pat("pat-paper-identity", "PAT with the paper's identity loss", **{"pat.identity_loss": "paper"}),
    _pat(
        "pat-mask-lr-auto", "PAT, mask lr matched to the released recipe's budget", mask_lr_multiplier="auto"
    ),
    _pat("pat-mask-lr-10", "PAT, mask lr x10", mask_lr_multiplier=10.0),
    # Ours, not the paper's (docs/method.md §12): what the diagnosis of the study points to.
    _pat(
        "pat-energy-start",
        "ours: PAT with W_M starting +0.5 on the N highest-energy channels, -0.5 elsewhere",
        **{"pat.mask_init": "energy"},
    ),
    _pat(
        "pat-pca",
        "ours: PAT in the residual PCA basis, W_M starting +-0.5 by PCA rank",
        **{"pat.basis": "pca", "pat.mask_init": "energy"},
    ),
    _pat("pat-pca-zero", "ours: PAT in the residual PCA basis, W_M starting at 0", **{"pat.basis": "pca"}),
    _pat(
        "pat-fixed-from-s0",
        "ours: PAT with the kept set fixed from s0 on (W_M held)",
        **{"pat.mask_after_milestone": "fixed"},
    ),
]
#: Our variants of PAT (labelled as ours wherever they are reported), beside the paper's PAT.
OUR_VARIANTS = ("pat-energy-start", "pat-pca", "pat-pca-zero", "pat-fixed-from-s0")
METHODS: dict[str, Method] = {m.name: m for m in _FIXED}
_HIO = re.compile(r"^pat-hio-(\d+)$")


def get_method(name: str) -> Method:
    """A method by name; `pat-hio-<r>` is PAT with HIO rank r. Unknown names list the known ones."""
    if name in METHODS:
        return METHODS[name]
    if match := _HIO.match(name):
        return _pat(name, f"PAT with HIO rank {match.group(1)}", **{"pat.hio_rank": int(match.group(1))})
    raise ConfigError(f"unknown method {name!r}; known: {', '.join(METHODS)}, pat-hio-<rank>")


def method_label(name: str) -> str:
    """The method's name in a table, our own variants marked as ours."""
    return f"`{name}` (ours)" if name in OUR_VARIANTS else f"`{name}`"
