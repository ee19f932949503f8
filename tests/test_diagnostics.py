"""Diagnostics of a PAT run (pat_lite.reproduce.diagnostics): lock-in, overlaps, rank correlation, the
soft/exact gap and update sizes — checked where the right answer is known."""

from __future__ import annotations

import pytest
import torch

from pat_lite.reproduce.diagnostics import diagnose, diagnostics_markdown, lock_in_steps, rank_correlation


def test_rank_correlation_is_one_for_a_monotone_map_and_minus_one_for_a_reversed_one():
    x = torch.randn(50)
    assert rank_correlation(x, x.exp()) == pytest.approx(1.0)
    assert rank_correlation(x, -x) == pytest.approx(-1.0)


def test_a_channel_locks_in_at_the_first_snapshot_after_its_last_flip():
    steps = torch.tensor([10, 20, 30, 40])
    proxies = torch.tensor(
        [[-1.0, 1.0, 1.0], [1.0, 1.0, -1.0], [1.0, -1.0, -1.0], [1.0, 1.0, -1.0]]
    )  # channel 0 flips at 20, channel 1 flips back at 40, channel 2 at 20
    assert lock_in_steps(steps, proxies).tolist() == [20, 40, 20]


@pytest.mark.slow
def test_a_fixed_norm_mask_run_keeps_exactly_the_norm_set(tiny_base_path, tmp_path):
    from pat_lite.models.loading import load_model_and_tokenizer
    from pat_lite.reproduce.suites import get_suite
    from pat_lite.training.config import load_train_config
    from pat_lite.training.run import train

    overrides = [f"output_dir={tmp_path / 'run'}", "max_steps=6", "logging_steps=2", "save_steps=6",
                 "report_to=[]", "pat.mask_mode=fixed", "pat.fixed_channels=norm"]  # fmt: skip
    train(load_train_config("tiny", overrides))
    base, tokenizer = load_model_and_tokenizer("tiny")
    diag = diagnose(tmp_path / "run", base, get_suite("toy").calibration(tokenizer))
    assert diag["overlap_norm"] == 1.0 and diag["target"] == 96 and diag["width"] == 128
    assert 0.0 <= diag["overlap_energy"] <= 1.0 and -1.0 <= diag["spearman_wm_vs_writer_norm"] <= 1.0
    assert diag["gap"]["step"] == [2, 4, 6] and all(v > 0 for v in diag["gap"]["exact"])
    assert set(diag["updates"]["lora"]) >= {"q_proj", "down_proj"} and diag["updates"]["hsm"]
    (line,) = diagnostics_markdown({"prune-ft-norm-hsm": diag})[2:]
    assert line.startswith("| `prune-ft-norm-hsm` | 100% |") and "(no s0)" in line and "None" not in line
