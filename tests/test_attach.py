"""attach_pat on stock transformers models: nothing changes at step 0, the losses, bad input
(docs/method.md §3-§5)."""

import math

import pytest
import torch
from tiny_models import TINY_CONFIGS, tiny_model, token_batch
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

from pat_lite import (
    PATConfig,
    UnsupportedArchitectureError,
    attach_pat,
    detach_pat,
    force_mask,
    get_pat,
    pat_losses,
    set_pat_step,
)
from pat_lite.core.hsm import HSM
from pat_lite.core.mask import EPSILON
from pat_lite.core.slicing import norm_channels


@pytest.mark.parametrize("arch", sorted(TINY_CONFIGS))
def test_step_zero_model_equals_the_original(arch):
    model = tiny_model(arch)
    ids = token_batch()
    reference = model(ids).logits
    model_class = type(model)
    names_before = {n for n, _ in model.named_parameters()}
    attach_pat(model, PATConfig(pruning_ratio=0.25, hio_rank=4, milestone_step=30))
    set_pat_step(model, 0)
    model.train()
    torch.testing.assert_close(model(ids).logits, reference, rtol=0, atol=1e-6)
    # Same class, same parameter names; PAT adds only `pat.*`.
    assert type(model) is model_class
    names_after = {n for n, _ in model.named_parameters()}
    assert names_before <= names_after
    assert all(n.startswith("pat.") for n in names_after - names_before)
    pat = get_pat(model)
    assert len(pat.hsms) == 1 + 2 * TINY_CONFIGS[arch].num_hidden_layers
    assert all(p.dtype == torch.float32 and p.requires_grad for p in pat.parameters())


def test_detach_restores_the_original_computation():
    model = tiny_model("llama-gqa")
    ids = token_batch()
    reference = model(ids).logits
    attach_pat(model, PATConfig(hio_rank=4, milestone_step=10))
    model.eval()  # eval mask drops channels: the output changes ...
    assert not torch.allclose(model(ids).logits, reference)
    detach_pat(model)  # ... and comes back once PAT is detached
    torch.testing.assert_close(model(ids).logits, reference, rtol=0, atol=0)
    assert not hasattr(model, "pat")


def test_attaching_twice_is_refused():
    model = attach_pat(tiny_model("llama-gqa"), PATConfig(hio_rank=4))
    with pytest.raises(ValueError, match="already attached"):
        attach_pat(model, PATConfig(hio_rank=4))


def test_training_without_a_milestone_says_how_to_set_it():
    model = attach_pat(tiny_model("llama-gqa"), PATConfig(hio_rank=4)).train()
    with pytest.raises(RuntimeError, match="set_pat_step"):
        model(token_batch())
    set_pat_step(model, 5, total_steps=30)
    assert get_pat(model).mask.milestone == 10  # 1/3 of the steps
    model(token_batch())


def test_losses_sum_every_hsm_and_are_finite_at_step_zero():
    model = attach_pat(tiny_model("llama-gqa"), PATConfig(hio_rank=4, milestone_step=10))
    pat = get_pat(model)
    losses = pat_losses(model)
    assert set(losses) == {"sparsity", "identity", "total"}
    assert all(torch.isfinite(v) for v in losses.values())
    per_hsm = [hsm.identity_loss("released") for hsm in pat.hsms.values()]
    torch.testing.assert_close(losses["identity"], sum(per_hsm))
    torch.testing.assert_close(losses["total"], losses["sparsity"] + losses["identity"])
    # Gradients reach the mask and every HSM's L0 (the identity loss) through `total`.
    losses["total"].backward()
    assert pat.mask.proxies.grad is not None and pat.mask.proxies.grad.abs().sum() > 0
    assert all(h.L0.grad is not None and h.L0.grad.abs().sum() > 0 for h in pat.hsms.values())


def test_identity_loss_variants():
    hsm = HSM(width=16, rank=4, rank_scale=True)
    with torch.no_grad():
        hsm.L0.copy_(torch.eye(4, 16))
        hsm.L1.copy_(torch.eye(16, 4) * 2)
    assert hsm.identity_loss("released").item() == pytest.approx(0.0)
    # ‖L1ᵀL1 − I‖_F = ‖3·I_4‖_F = 6
    assert hsm.identity_loss("paper").item() == pytest.approx(6.0)
    off = attach_pat(tiny_model("llama-gqa"), PATConfig(hio_rank=4, identity_loss="off"))
    assert pat_losses(off)["identity"].item() == 0.0
    frozen = attach_pat(tiny_model("llama-gqa"), PATConfig(hio_rank=4, mask_mode="frozen"))
    assert pat_losses(frozen)["sparsity"].item() == 0.0


def test_hsm_starts_as_the_identity_operator():
    hsm = HSM(width=8, rank=3)
    y = torch.randn(2, 5, 8)
    torch.testing.assert_close(hsm(y, torch.ones(8)), y)
    torch.testing.assert_close(hsm.operator(), torch.eye(8))


# ------------------------------------------------------------------------------------------ bad input
def llama(hidden=64, heads=4):
    return LlamaConfig(
        hidden_size=hidden,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        intermediate_size=96,
        num_hidden_layers=1,
        vocab_size=50,
    )


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.1, 1.5])
def test_ratio_outside_zero_one_is_refused(ratio):
    with pytest.raises(ValueError, match=r"pruning ratio must be in \(0, 1\)"):
        PATConfig(pruning_ratio=ratio)


def test_width_not_smaller_than_the_model_is_refused():
    with pytest.raises(ValueError, match="not smaller than the model's hidden size 64"):
        PATConfig(target_width=64).resolve(llama())


def test_width_the_architecture_cannot_hold_names_the_nearest_valid_widths():
    with pytest.raises(ValueError, match=r"multiple of num_attention_heads=4.*\[48, 52\]"):
        PATConfig(target_width=50).resolve(llama())
    # The paper's 30 % of Llama-2-7B (2868) is not a multiple of 32 heads.
    big = llama(hidden=4096, heads=32)
    with pytest.raises(ValueError, match=r"\[2848, 2880\]"):
        PATConfig(target_width=2868).resolve(big)
    assert PATConfig(pruning_ratio=0.25).resolve(big).target_width == 3072
    assert PATConfig(pruning_ratio=0.3, width_alignment=128).resolve(big).target_width == 2816


def test_unsupported_architectures_get_an_error_naming_the_supported_ones():
    gpt2 = AutoModelForCausalLM.from_config(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50))
    with pytest.raises(UnsupportedArchitectureError, match=r"LayerNorm.*llama.*mistral.*qwen2.*gemma"):
        attach_pat(gpt2, PATConfig())
    config = llama()
    config.model_type = "gemma2"
    with pytest.raises(ValueError, match="extra post-attention"):
        PATConfig().resolve(config)


def test_other_bad_knobs():
    with pytest.raises(ValueError, match="milestone_step"):
        PATConfig(milestone_step=1)
    with pytest.raises(ValueError, match="identity_loss"):
        PATConfig(identity_loss="sometimes")
    with pytest.raises(ValueError, match="hio_rank 100 exceeds"):
        PATConfig(hio_rank=100).resolve(llama())
    with pytest.raises(ValueError, match="unknown PATConfig fields"):
        PATConfig.from_dict({"ratio": 0.3})


def test_module_apply_still_walks_an_attached_model():
    # transformers and peft call model.apply(fn); PAT's container must not shadow nn.Module.apply.
    model = attach_pat(tiny_model("llama-gqa"), PATConfig(hio_rank=4))
    visited = []
    model.apply(lambda module: visited.append(type(module).__name__))
    assert "HSM" in visited and "GlobalMask" in visited


# ---------------------------------------------------------------------------- forcing the soft/exact mask
def test_force_mask_picks_soft_or_exact_whatever_the_mode_and_restores_it():
    model = attach_pat(tiny_model("llama-gqa"), PATConfig(hio_rank=4, milestone_step=10))
    with torch.no_grad():
        get_pat(model).mask.proxies.copy_(torch.linspace(-0.5, 0.5, 64))
    set_pat_step(model, 4)
    ids = token_batch()
    with torch.no_grad():
        soft = model.train()(ids).logits  # the tiny models have no dropout: train = eval but for the mask
        exact = model.eval()(ids).logits
        assert not torch.allclose(soft, exact)
        with force_mask(model, "soft"):
            torch.testing.assert_close(model(ids).logits, soft, rtol=0, atol=0)
        model.train()
        with force_mask(model, "exact"):
            torch.testing.assert_close(model(ids).logits, exact, rtol=0, atol=0)
        with pytest.raises(KeyError), force_mask(model, "exact"):
            raise KeyError("the mask is restored even when the block fails")
        torch.testing.assert_close(model(ids).logits, soft, rtol=0, atol=0)
    with pytest.raises(ValueError, match="'soft' or 'exact'"), force_mask(model, "hard"):
        pass


def test_logged_temperature_follows_the_schedule():
    model = attach_pat(tiny_model("llama-gqa"), PATConfig(hio_rank=4, milestone_step=10, schedule="paper"))
    set_pat_step(model, 9)
    assert get_pat(model).stats()["tau"] == pytest.approx(1 / (1 - math.log(9) / math.log(10) + 1e-6))
    set_pat_step(model, 10)
    assert get_pat(model).stats()["tau"] == pytest.approx(1 / EPSILON)


# ------------------------------------------------------------------------------------ fixed channel set
def test_fixed_norm_mask_keeps_the_norm_channels_and_trains_only_the_hsms():
    model = tiny_model("llama-mha-bias")
    expected = norm_channels(model, 48).tolist()
    attach_pat(model, PATConfig(hio_rank=4, mask_mode="fixed", fixed_channels="norm"))
    pat = get_pat(model)
    assert pat.config.fixed_channels == expected  # the resolved config records the channels
    mask = torch.zeros(64)
    mask[expected] = 1.0
    model.train()
    assert torch.equal(pat.mask(), mask)  # exact from step 0, no milestone needed
    assert pat.stats() == {"active_channels": 48.0}
    assert list(pat.mask.parameters()) == []
    loss = model(token_batch(), labels=token_batch()).loss + pat_losses(model)["total"]
    assert pat_losses(model)["sparsity"].item() == 0.0
    loss.backward()
    assert all(h.L1.grad is not None and h.L1.grad.abs().sum() > 0 for h in pat.hsms.values())


def test_fixed_mask_with_a_channel_list():
    channels = [9, 3, 0, 63, 5, 7, 2, 40]
    config = PATConfig(target_width=8, hio_rank=4, mask_mode="fixed", fixed_channels=channels)
    model = attach_pat(tiny_model("llama-gqa"), config)
    assert get_pat(model).config.fixed_channels == [0, 2, 3, 5, 7, 9, 40, 63]
    assert torch.nonzero(get_pat(model).mask.eval()()).flatten().tolist() == [0, 2, 3, 5, 7, 9, 40, 63]


def test_bad_fixed_channel_settings_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="needs fixed_channels"):
        PATConfig(mask_mode="fixed")
    with pytest.raises(ValueError, match="only used with mask_mode='fixed'"):
        PATConfig(fixed_channels="norm")
    with pytest.raises(ValueError, match="list of channel indices, 'norm' or 'energy'"):
        PATConfig(mask_mode="fixed", fixed_channels="largest")
    with pytest.raises(ValueError, match="lists a channel twice"):
        PATConfig(mask_mode="fixed", fixed_channels=[1, 1, 2])
    with pytest.raises(ValueError, match="non-negative channel indices"):
        PATConfig(mask_mode="fixed", fixed_channels=[-1, 2])
    with pytest.raises(ValueError, match="lists 3 channels but the target width is 48"):
        PATConfig(mask_mode="fixed", fixed_channels=[0, 1, 2]).resolve(llama())
    with pytest.raises(ValueError, match="index 64, beyond the hidden size 64"):
        PATConfig(target_width=4, mask_mode="fixed", fixed_channels=[0, 1, 2, 64]).resolve(llama())
    with pytest.raises(ValueError, match="schedule='faster': expected one of 'released', 'paper'"):
        PATConfig(schedule="faster")
