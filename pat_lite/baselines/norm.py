"""The norm criterion as a pruning baseline: cut the hidden channels whose writers have the smallest norm.

Channel i's writer norm is the L2 norm of the embedding column i and the rows i of every o_proj and
down_proj (`pat_lite.core.slicing.writer_norms`). Keeping the d' largest and slicing the rest out gives the
same logits as zeroing the dropped channels' writers in the full model (`zero_hidden_channels`): pruning
without any tuning, exactly.
"""

from __future__ import annotations

from transformers import PreTrainedModel

from pat_lite.core.arch import check_width
from pat_lite.core.slicing import check_plain_model, norm_channels, slice_hidden


def norm_cut(model: PreTrainedModel, width: int) -> PreTrainedModel:
    """`model` cut to its `width` channels of largest writer norm: a new plain model of the same class with
    hidden_size = width (untied embeddings); `model` is not changed."""
    check_plain_model(model)
    check_width(model.config, int(width))
    return slice_hidden(model, norm_channels(model, int(width)))
