"""Our extensions of PAT (docs/method.md §12), each a PATConfig option: an informed start of W_M
(`mask_init`), PAT in the residual PCA basis (`basis`), and a kept set fixed from the milestone on
(`mask_after_milestone`). The paper's PAT stays the default (zero start, coordinate basis, trainable)."""

from __future__ import annotations

import json

import pytest
import torch
from peft import LoraConfig, get_peft_model
from run_helpers import tiny_settings
from tiny_models import TINY_CONFIGS, tiny_checkpoint, tiny_model, token_batch, write_instruction_file

from pat_lite import PATConfig, attach_pat, get_pat, merge_pat, set_pat_step
from pat_lite.core.mask import kept_channels, sparsity_loss, top_channels
from pat_lite.core.residual import residual_energy
from pat_lite.core.slicing import norm_channels
from pat_lite.training.run import train
from pat_lite.training.trainer import load_mask_history

#: As tests/test_merge.py (measured at most 2.2e-6 over architectures, seeds and CPU kernels).
TOLERANCE = 1e-4


def calibration():
    return [token_batch(batch=4, length=16, seed=seed) for seed in (31, 32)]


def test_the_paper_is_the_default():
    config = PATConfig()
    assert (config.mask_init, config.basis, config.mask_after_milestone) == (
        "zero",
        "coordinates",
        "trainable",
    )
    assert not config.needs_calibration


def test_an_energy_start_puts_the_sparsity_loss_at_rest_on_the_highest_energy_channels():
    model = tiny_model("llama-gqa")
    energy = residual_energy(model, calibration())
    attach_pat(
        model, PATConfig(pruning_ratio=0.25, hio_rank=4, mask_init="energy"), calibration=calibration()
    )
    proxies = get_pat(model).mask.proxies.detach()
    kept = torch.nonzero(proxies > 0).flatten()
    assert kept.tolist() == top_channels(energy, 48).tolist()
    assert set(proxies.abs().tolist()) == {0.5}
    assert sparsity_loss(proxies, 48).item() == 0.0  # count on target, every W_M on its pull target


def test_a_norm_start_uses_the_norm_criterion():
    model = tiny_model("llama-gqa")
    expected = norm_channels(model, 48).tolist()
    attach_pat(model, PATConfig(pruning_ratio=0.25, hio_rank=4, mask_init="norm"))
    assert torch.nonzero(get_pat(model).mask.proxies > 0).flatten().tolist() == expected


def test_settings_that_measure_the_stream_need_calibration_and_say_so():
    for settings in ({"mask_init": "energy"}, {"basis": "pca"}):
        with pytest.raises(ValueError, match="calibration"):
            attach_pat(tiny_model("llama-gqa"), PATConfig(hio_rank=4, **settings))
    with pytest.raises(ValueError, match="mask_mode"):
        PATConfig(mask_mode="frozen", mask_init="energy")
    with pytest.raises(ValueError, match="basis"):
        PATConfig(basis="fourier")


@pytest.mark.parametrize("arch", sorted(TINY_CONFIGS))
def test_pat_in_the_pca_basis_is_exact_at_the_start_and_merges_into_a_plain_model(arch):
    model = tiny_model(arch)
    ids = token_batch()
    with torch.no_grad():
        original = model(ids).logits
    config = PATConfig(pruning_ratio=0.25, hio_rank=4, basis="pca", milestone_step=10)
    rotated = attach_pat(model, config, calibration=calibration())
    assert rotated is not model and type(rotated) is type(model)
    pat = get_pat(rotated)
    assert pat.rotation.shape == (64, 64)
    torch.testing.assert_close(pat.rotation.T @ pat.rotation, torch.eye(64), atol=1e-5, rtol=0)
    rotated.train()
    set_pat_step(rotated, 0)
    with torch.no_grad():  # W_M = 0: every gate is exactly 1, and the rotation changes nothing
        assert (rotated(ids).logits - original).abs().max().item() <= TOLERANCE
    tuned = get_peft_model(rotated, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for hsm in pat.hsms.values():
            hsm.L1.copy_(0.1 * torch.randn(hsm.L1.shape, generator=generator))
        proxies = -0.5 * torch.rand(64, generator=generator)
        proxies[torch.randperm(64, generator=generator)[:48]] = 0.3
        pat.mask.proxies.copy_(proxies)
    tuned.eval()
    with torch.no_grad():
        expected = tuned(input_ids=ids).logits
        merged = merge_pat(tuned)
        got = merged(ids).logits
    assert type(merged).__name__ == type(model).__name__ and merged.config.hidden_size == 48
    assert (got - expected).abs().max().item() <= TOLERANCE


def test_with_an_energy_start_in_the_pca_basis_w_m_starts_by_pca_rank():
    model = tiny_model("llama-gqa")
    rotated = attach_pat(
        model, PATConfig(pruning_ratio=0.25, hio_rank=4, basis="pca", mask_init="energy"),
        calibration=calibration(),
    )  # fmt: skip
    # channel i of the rotated model is the i-th principal direction: the first 48 carry the most energy
    assert torch.nonzero(get_pat(rotated).mask.proxies > 0).flatten().tolist() == list(range(48))


def test_a_fixed_energy_cut_in_the_pca_basis_is_the_pca_slice_before_any_tuning():
    """prune-ft-pca-hsm's starting point: the mask 0/1 on the top principal directions from step 0 and
    HSMs at identity merge into exactly the SliceGPT-style slice that prune-ft-pca tunes."""
    from pat_lite.baselines.pca import pca_slice

    model, ids = tiny_model("llama-gqa"), token_batch()
    config = PATConfig(
        pruning_ratio=0.25, hio_rank=4, basis="pca", mask_mode="fixed", fixed_channels="energy"
    )
    assert config.needs_calibration
    with pytest.raises(ValueError, match="calibration"):
        attach_pat(tiny_model("llama-gqa"), config)
    rotated = attach_pat(model, config, calibration=calibration())
    assert get_pat(rotated).config.fixed_channels == list(range(48))
    rotated.eval()
    with torch.no_grad():
        expected = pca_slice(tiny_model("llama-gqa"), 48, calibration())(ids).logits
        masked = rotated(ids).logits
        merged = merge_pat(rotated)(ids).logits
    assert (masked - expected).abs().max().item() <= TOLERANCE
    assert (merged - expected).abs().max().item() <= TOLERANCE


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("informed_assets")
    return tiny_checkpoint(root / "base"), write_instruction_file(root / "data.jsonl")


def _run(assets, out, **pat):
    settings = {"max_steps": 12, "learning_rate": 0.05, "logging_steps": 1, "save_steps": 100}
    pat_settings = {"pat.milestone_step": 4, **{f"pat.{k}": v for k, v in pat.items()}}
    return train(tiny_settings(assets, out, **settings, **pat_settings), progress=False)


def _decisions_after(history_path, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    steps, proxies = load_mask_history(history_path)
    at = proxies[steps.tolist().index(step)]
    return at, proxies[-1]


def test_a_kept_set_fixed_from_the_milestone_is_the_merged_models_kept_set(assets, tmp_path):
    held = _run(assets, tmp_path / "held", mask_after_milestone="fixed")
    at_milestone, final = _decisions_after(held.output_dir / "mask_history.safetensors", 4)
    assert torch.equal(at_milestone, final)  # W_M did not move after s0, momentum and sparsity loss included
    record = json.loads((held.output_dir / "merged" / "pat_kept.json").read_text())
    assert record["kept_channels"] == kept_channels(at_milestone, 48).tolist()
    # without the option the sparsity loss keeps moving W_M after s0 (the paper's behaviour)
    free = _run(assets, tmp_path / "free")
    at_milestone, final = _decisions_after(free.output_dir / "mask_history.safetensors", 4)
    assert not torch.equal(at_milestone, final)


def test_train_gives_pat_its_calibration_and_merges_a_pca_basis_run(assets, tmp_path):
    result = _run(assets, tmp_path / "pca", basis="pca", mask_init="energy")
    assert result.merged.config.hidden_size == 48 and result.summary["merged_hidden_size"] == 48
    ids = token_batch()
    result.model.eval()
    with torch.no_grad():
        assert (result.merged(ids).logits - result.model(input_ids=ids).logits).abs().max() <= TOLERANCE
