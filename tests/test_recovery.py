"""The toy world's recovery gate (pat_lite.study.recovery): exact slicing of the norm cut, gate checking."""

from __future__ import annotations

import copy

import torch

from pat_lite.models.tinybase import crude_hidden_cut, norm_cut_channels
from pat_lite.study import recovery


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=50, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, tie_word_embeddings=False,
    )  # fmt: skip
    return LlamaForCausalLM(config).eval()


def test_the_sliced_norm_cut_reproduces_the_zeroed_model_exactly():
    model = _tiny_llama()
    cut = norm_cut_channels(model, 0.25)
    zeroed = copy.deepcopy(model)
    assert crude_hidden_cut(zeroed, 0.25) == cut
    sliced = recovery.slice_channels(model, cut)
    assert sliced.config.hidden_size == 24 and type(sliced) is type(model)
    ids = torch.randint(0, 50, (3, 11))
    with torch.no_grad():
        torch.testing.assert_close(sliced(ids).logits, zeroed(ids).logits, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(model(ids).logits, zeroed(ids).logits, atol=1e-3)  # the cut does change it


def test_the_recovery_gate_names_each_split_that_gains_too_little():
    report = {"skill_recovery": {"validation": 12.0, "test": 9.5}}
    assert recovery.check_recovery(report) == [
        "test: prune→tune gains only 9.5 points of skill over the untuned cut (< 10.0)"
    ]
    assert recovery.check_recovery(report, minimum=9.0) == []
