"""pat_lite — PAT (Pruning-Aware Tuning, Liu et al., AAAI 2025) on stock transformers + peft.

from pat_lite import PATConfig, attach_pat, set_pat_step, pat_losses, merge_pat
"""

from pat_lite.core.arch import SUPPORTED_ARCHITECTURES, UnsupportedArchitectureError
from pat_lite.core.attach import (
    PATModule,
    attach_pat,
    detach_pat,
    force_mask,
    get_pat,
    mark_pat_trainable,
    pat_losses,
    pat_parameters,
    set_pat_step,
)
from pat_lite.core.config import PATConfig
from pat_lite.core.merge import merge_pat

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "PATConfig",
    "PATModule",
    "UnsupportedArchitectureError",
    "attach_pat",
    "detach_pat",
    "force_mask",
    "get_pat",
    "mark_pat_trainable",
    "merge_pat",
    "pat_losses",
    "pat_parameters",
    "set_pat_step",
]
__version__ = "0.1.0"
