"""Pruning baselines in the same code as PAT (issue 9): each cuts a plain model to hidden width d' and
returns a plain model of the same class that stock `AutoModelForCausalLM` saves and loads.

- `norm_cut(model, width)`: keep the d' channels of largest writer norm (prune-ft-norm, ft-prune-norm);
- `pca_slice(model, width, calibration)`: SliceGPT-style, one PCA rotation of the residual stream, then
  keep the top d' directions (prune-ft-pca, ft-prune-pca).

Whether LoRA runs before or after the cut is the study's business; the fixed-cut PAT baseline
(prune-ft-norm-hsm) is `PATConfig(mask_mode="fixed", fixed_channels="norm")` in the normal training path.
"""

from pat_lite.baselines.norm import norm_cut
from pat_lite.baselines.pca import pca_slice

__all__ = ["norm_cut", "pca_slice"]
