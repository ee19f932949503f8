"""SliceGPT-style pruning with ONE rotation of the whole residual stream (prune-ft-pca, ft-prune-pca).

The base is rotated into the PCA basis of its residual stream (`pat_lite.core.residual`: norms folded into
the readers, every writer and reader rotated by one orthogonal Q — exact, the same logits), so the first d'
rotated channels carry most of the stream. Keeping them is `slice_hidden(rotated, range(d'))`
(`pat_lite.core.slicing`), which is exact for the rotated model with the other d − d' directions zeroed
(their writers' rows set to 0) — "exact before tuning, like the merge"; what those directions carried is
what the cut costs.

Unlike SliceGPT, which rotates each layer differently and adds a d × d' matrix to every residual
connection, one Q serves the whole stream, so the result stays a plain model of the same class.
"""

from __future__ import annotations

from transformers import PreTrainedModel

from pat_lite.core.arch import check_width
from pat_lite.core.residual import Calibration, pca_rotation, rotation_fold
from pat_lite.core.slicing import check_plain_model, slice_hidden


def pca_slice(model: PreTrainedModel, width: int, calibration: Calibration) -> PreTrainedModel:
    """`model` rotated into its residual-stream PCA basis and cut to the top `width` directions: a new plain
    model of the same class with hidden_size = width (untied embeddings). `width` = hidden_size returns the
    rotated model uncut (the same logits as `model`). `model` is not changed."""
    check_plain_model(model)
    width = int(width)
    if width != int(model.config.hidden_size):
        check_width(model.config, width)
    rotation, _ = pca_rotation(model, calibration)
    return slice_hidden(model, range(width), fold=rotation_fold(model, rotation))
