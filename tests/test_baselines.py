"""The slicing primitive, the norm criterion and the pruning baselines (issue 9; docs/method.md §2, §8).

Exactness is checked as for the merge: fp32, max abs logit difference ≤ 1e-4, on every architecture of
tests/tiny_models.py (GQA and not, biases, tied embeddings, Gemma's norm offset and embedding scale).
"""

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from tiny_models import TINY_CONFIGS, tiny_model, token_batch
from transformers import AutoModelForCausalLM

from pat_lite import PATConfig, attach_pat
from pat_lite.baselines import norm_cut, pca_slice
from pat_lite.core.residual import pca_rotation, residual_second_moment, rotate_residual
from pat_lite.core.slicing import norm_channels, slice_hidden, writer_norms, zero_hidden_channels
from pat_lite.evaluation.gates import norm_cut_complement

#: As tests/test_merge.py: measured at most 2.2e-6 (AVX-512) / 1.5e-6 (generic kernels); bound 45x that.
TOLERANCE = 1e-4

pytestmark = pytest.mark.committed_numbers
ARCHS = sorted(TINY_CONFIGS)


def model_of(arch: str):
    """`tiny_model(arch)` with random biases too (transformers initialises them to 0, which would hide a
    writer bias that is not cut or rotated)."""
    model = tiny_model(arch)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(".bias"):
                param.copy_(0.1 * torch.randn(param.shape, generator=generator))
    return model


def max_difference(model_a, model_b, ids) -> float:
    with torch.no_grad():
        return (model_a(ids).logits - model_b(ids).logits).abs().max().item()


def calibration_batches():
    return [token_batch(batch=4, length=16, seed=seed) for seed in (11, 12)]


def reloads_with_the_same_logits(model, path, ids) -> bool:
    model.save_pretrained(path)
    reloaded = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return type(reloaded) is type(model) and max_difference(reloaded, model, ids) <= TOLERANCE


# ------------------------------------------------------------------------------------- norm criterion
def test_writer_norms_sum_the_squares_of_every_residual_writer():
    model = model_of("llama-mha-bias")  # o_proj and down_proj have biases too
    inner = model.model
    squares = inner.embed_tokens.weight.pow(2).sum(0)
    for layer in inner.layers:
        for writer in (layer.self_attn.o_proj, layer.mlp.down_proj):
            squares = squares + writer.weight.pow(2).sum(1) + writer.bias.pow(2)
    torch.testing.assert_close(writer_norms(model), squares.detach().sqrt())
    assert norm_channels(model, 48).tolist() == sorted(torch.argsort(-squares)[:48].tolist())


def test_the_tiny_base_gate_uses_the_shared_norm_criterion():
    model = model_of("llama-gqa")
    keep = set(norm_channels(model, 48).tolist())
    assert norm_cut_complement(model, 0.25) == [c for c in range(64) if c not in keep]


# ------------------------------------------------------------------------------------ slicing, norm cut
@pytest.mark.parametrize("arch", ARCHS)
def test_norm_cut_reproduces_the_full_model_with_the_same_channels_zeroed(arch, tmp_path):
    model = model_of(arch)
    ids = token_batch()
    original = model(ids).logits.detach()
    cut = norm_cut(model, 48)
    assert type(cut) is type(model) and cut.config.hidden_size == 48
    assert cut.lm_head.weight.data_ptr() != cut.model.embed_tokens.weight.data_ptr()
    zeroed = copy.deepcopy(model)
    keep = set(norm_channels(model, 48).tolist())
    zero_hidden_channels(zeroed, [c for c in range(64) if c not in keep])
    assert max_difference(cut, zeroed, ids) <= TOLERANCE
    assert max_difference(cut, model, ids) > 100 * TOLERANCE  # a cut without tuning does change the model
    torch.testing.assert_close(model(ids).logits, original, rtol=0, atol=0)  # the input is left alone
    assert reloads_with_the_same_logits(cut, tmp_path, ids)


def test_slicing_nothing_away_returns_the_same_model_untied():
    model = model_of("qwen2-tied")
    same = slice_hidden(model, range(64))
    assert same.config.hidden_size == 64 and not same.config.tie_word_embeddings
    assert max_difference(same, model, token_batch()) == 0.0


def test_cutting_refuses_bad_input_with_the_reason():
    model = model_of("llama-gqa")
    with pytest.raises(ValueError, match="multiple of num_attention_heads=4"):
        norm_cut(model, 50)
    with pytest.raises(ValueError, match="not smaller than the model's hidden size 64"):
        norm_cut(model, 64)
    with pytest.raises(ValueError, match="distinct"):
        slice_hidden(model, [0, 0, 1, 2])
    with pytest.raises(ValueError, match=r"lie in \[0, 64\)"):
        slice_hidden(model, [0, 1, 2, 64])
    lora = get_peft_model(model_of("llama-gqa"), LoraConfig(r=2, target_modules="all-linear"))
    with pytest.raises(ValueError, match="merge_and_unload"):
        norm_cut(lora, 48)
    with pytest.raises(ValueError, match="merge_and_unload"):
        pca_slice(lora, 48, calibration_batches())
    with_pat = attach_pat(model_of("llama-gqa"), PATConfig(hio_rank=4))
    with pytest.raises(ValueError, match="merge_pat"):
        norm_cut(with_pat, 48)
    with pytest.raises(ValueError, match="calibration set is empty"):
        pca_slice(model, 48, [])


# ------------------------------------------------------------------------------------------ PCA slice
def random_rotation(width: int, seed: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(width, width, generator=generator, dtype=torch.float64))
    return q


@pytest.mark.parametrize("arch", ARCHS)
def test_any_rotation_of_the_residual_stream_leaves_the_logits_unchanged(arch):
    model = model_of(arch)
    rotated = rotate_residual(model, random_rotation(64))
    assert max_difference(rotated, model, token_batch()) <= TOLERANCE
    # The norms were folded into the readers: every RMSNorm now has effective weight 1.
    offset = 1.0 if arch.startswith("gemma") else 0.0
    torch.testing.assert_close(rotated.model.norm.weight + offset, torch.ones(64))


@pytest.mark.parametrize("arch", ARCHS)
def test_pca_slice_to_the_full_width_reproduces_the_original(arch):
    model = model_of(arch)
    full = pca_slice(model, 64, calibration_batches())
    assert full.config.hidden_size == 64
    assert max_difference(full, model, token_batch()) <= TOLERANCE


@pytest.mark.parametrize("arch", ARCHS)
def test_pca_slice_reproduces_the_rotated_model_with_the_dropped_directions_zeroed(arch, tmp_path):
    model = model_of(arch)
    ids = token_batch()
    sliced = pca_slice(model, 48, calibration_batches())
    assert type(sliced) is type(model) and sliced.config.hidden_size == 48
    rotation, _ = pca_rotation(model, calibration_batches())
    zeroed = rotate_residual(model, rotation)
    zero_hidden_channels(zeroed, range(48, 64))
    assert max_difference(sliced, zeroed, ids) <= TOLERANCE
    assert max_difference(sliced, model, ids) > 100 * TOLERANCE
    assert reloads_with_the_same_logits(sliced, tmp_path, ids)


def test_pca_basis_is_orthogonal_and_sorted_by_the_variance_it_keeps():
    model = model_of("llama-gqa")
    rotation, variances = pca_rotation(model, calibration_batches())
    torch.testing.assert_close(rotation.T @ rotation, torch.eye(64, dtype=torch.float64))
    assert torch.all(variances[:-1] >= variances[1:])
    assert variances.sum().item() == pytest.approx(1.0)
    # The first 48 directions hold at least 48/64 of the (normalised) stream's energy, more than the
    # first 48 of the original channels do.
    moment = residual_second_moment(model, calibration_batches())
    kept_by_pca = variances[:48].sum().item()
    kept_by_first_channels = (moment.diagonal()[:48].sum() / moment.trace()).item()
    assert kept_by_pca >= 48 / 64 and kept_by_pca > kept_by_first_channels


def test_calibration_ignores_padded_positions():
    model = model_of("llama-gqa")
    ids = token_batch(batch=2, length=10, seed=21)
    padded = torch.cat([ids, torch.zeros(2, 6, dtype=torch.long)], dim=1)
    attention = torch.cat([torch.ones(2, 10), torch.zeros(2, 6)], dim=1).long()
    plain = residual_second_moment(model, ids)
    batch = {"input_ids": padded, "attention_mask": attention, "labels": padded}  # extra keys are ignored
    masked = residual_second_moment(model, batch)
    # The moment is summed in float64 but the model runs in fp32, and padded attention rounds differently
    # from unpadded. Measured max |difference| over 20 such batches (entries up to 3.0): 2.0e-7 with
    # AVX-512 kernels, 1.2e-7 AVX2, 1.1e-7 generic (ATEN_CPU_CAPABILITY); float64's default bound (1e-7)
    # failed on another machine (1.18e-7). Bound: 10x the largest measured.
    torch.testing.assert_close(masked, plain, rtol=0, atol=2e-6)
    assert plain.trace().item() == pytest.approx(2 * 10 * (2 * 2 + 1))  # tokens × read sites, unit vectors
