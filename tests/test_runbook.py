"""Notebook 03's runbook checks: each prerequisite gives a one-line verdict that says what was found and what
to do, without going to the network; the disk plan and the timeline follow from the recipe."""

from __future__ import annotations

import pytest
import torch

from pat_lite.bench.common import resolve_config
from pat_lite.bench.memory_plan import GIB, plan_for_recipe
from pat_lite.notebook import runbook
from pat_lite.training.config import load_train_config

LLAMA2_7B = resolve_config("llama2-7b")


@pytest.fixture(scope="module")
def recipe():
    cfg = load_train_config("llama2-7b-a100")
    return cfg, plan_for_recipe(cfg, LLAMA2_7B)


def test_a_verdict_is_one_line_that_starts_with_its_outcome():
    assert str(runbook.Verdict(True, "fine")).startswith("ok ")
    assert str(runbook.Verdict(False, "gone")).startswith("MISSING ")
    assert str(runbook.Verdict(None, "unknown")).startswith("note ")


def test_without_a_gpu_the_gpu_checks_say_missing_with_what_is_needed(monkeypatch, recipe):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _, plan = recipe
    memory = runbook.check_gpu_memory(plan)
    assert memory.ok is False and f"~{(plan.total + plan.headroom) / GIB:.1f} GiB" in memory.text
    assert runbook.check_bf16().ok is False
    assert runbook.check_cuda_torch().ok is False


def test_the_model_check_knows_embedded_local_and_uncached_hub_models(tmp_path, monkeypatch):
    assert runbook.check_model("tiny").ok and runbook.check_model("smollm2-135m").ok
    (tmp_path / "config.json").write_text("{}")
    assert runbook.check_model(str(tmp_path)).ok
    assert runbook.check_model(str(tmp_path.parent)).ok is False  # a folder without config.json
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    gated = runbook.check_model("meta-llama/Llama-2-7b-hf", cache_dir=tmp_path / "empty-cache")
    assert gated.ok is False and "licence" in gated.text and "\n" not in str(gated)


def test_the_data_check_reads_a_local_file_or_the_hub_cache(tmp_path, monkeypatch):
    data = tmp_path / "lamini.jsonl"
    assert runbook.check_dataset(str(data), "MBZUAI/LaMini-instruction").ok is False
    data.write_text('{"instruction": "a", "response": "b"}\n')
    assert runbook.check_dataset(str(data), "MBZUAI/LaMini-instruction").ok
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = runbook.check_dataset("lamini", "MBZUAI/LaMini-instruction", cache_dir=tmp_path / "empty-cache")
    assert missing.ok is False and "load_dataset('MBZUAI/LaMini-instruction')" in missing.text


def test_the_disk_plan_of_the_7b_recipe(recipe):
    cfg, plan = recipe
    disk = runbook.disk_plan(cfg, LLAMA2_7B, plan, optimizer_steps=30_301, local_model=False)
    assert disk["base model download (bf16)"] == 2 * 6_738_415_616
    # save_total_limit 2, plus the one being written; 12 bytes per trainable parameter (weights + AdamW)
    assert disk["checkpoints (3 at a time)"] == 3 * 12 * 156_737_536
    merged = 6_738_415_616 - 1024 * (2 * 32000 + 32 * (4 * 4096 + 3 * 11008 + 2) + 1)
    assert disk["merged/ (bf16)"] == 2 * merged  # 5.05 B parameters (§8)
    assert (
        runbook.disk_plan(cfg, LLAMA2_7B, plan, 30_301, local_model=True)["base model download (bf16)"] == 0
    )


def test_the_disk_check_compares_free_space_with_the_plan(tmp_path):
    assert runbook.check_disk(tmp_path / "not" / "yet", 1).ok
    assert runbook.check_disk(tmp_path, 2**62).ok is False


def test_the_timeline_puts_the_landmarks_at_the_recipes_steps(recipe):
    cfg, _ = recipe
    frame = runbook.timeline(cfg, 30_301, hours=100.0)
    assert list(frame.index) == ["100", "5,050", "10,100", "30,301"]  # warm-up, s0 / 2, s0, the end
    assert list(frame["hours in"]) == ["0.3", "16.7", "33.3", "100.0"]
