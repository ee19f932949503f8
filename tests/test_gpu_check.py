"""The GPU self-check's CPU-testable parts: the memory plan (hand-computed for Llama-2-7B, and measured
against what autograd really keeps), the projection arithmetic, the report's schema, and the whole check as
a CPU dry run on small models. What only a GPU can show (CUDA step times and peaks) is not tested here."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig

from pat_lite import cli
from pat_lite.bench import gpu_check
from pat_lite.bench.common import build_random_model, resolve_config
from pat_lite.bench.memory_plan import GIB, Shape, activations_per_layer, plan_memory, saved_activation_bytes
from pat_lite.training.config import load_train_config

LLAMA2_7B = resolve_config("llama2-7b")


# ------------------------------------------------------------------------------------------- memory plan
def test_the_plan_for_llama2_7b_matches_the_hand_computed_numbers():
    plan = plan_memory(LLAMA2_7B, batch_size=8, seq_len=256, lora_r=20, lora_dropout=0.05, hio_rank=200,
                       gradient_checkpointing=False)  # fmt: skip
    # weights: embedding and lm_head 32000·4096 each, 32 layers of 4·4096² + 3·4096·11008 + 2·4096, a norm
    base = 2 * 32000 * 4096 + 32 * (4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096) + 4096
    assert base == 6_738_415_616
    assert plan.parts["weights"] == 2 * base
    # trainable: LoRA-20 on q, k, v, o (4096 → 4096) and gate, up, down (4096 ↔ 11008): 50.0 M (§7);
    # 65 HSMs of 2·200·4096 + 4096: 106.8 M (§3); the mask: 4096
    lora = 32 * 20 * (4 * (4096 + 4096) + 3 * (4096 + 11008))
    hsm = 65 * (2 * 200 * 4096 + 4096)
    assert (lora, hsm) == (49_971_200, 106_762_240)
    assert plan.trainable == lora + hsm + 4096 == 156_737_536
    assert plan.parts["trainable state"] == 16 * 156_737_536
    # activations per token and layer: norms 8d, attention 4a + 4k, MLP 6f, LoRA inputs (5d + a + f) in
    # bf16 (2) and after dropout in float32 (4), LoRA hiddens 7·2r, HSMs 12d + 4h
    per_layer = 8 * 4096 + 8 * 4096 + 6 * 11008 + 6 * (6 * 4096 + 11008) + 7 * 2 * 20 + 12 * 4096 + 4 * 200
    assert per_layer == activations_per_layer(Shape.of(LLAMA2_7B), 20, 0.05, 200) == 395_320
    outside = 6 * 4096 + 4 * 4096 + 4 * 32000  # embedding HSM, final norm, float32 log-probabilities
    assert plan.parts["activations"] == 2048 * (32 * per_layer + outside) + 2 * 156_737_536
    assert plan.parts["loss workspace"] == 6 * 2048 * 32000
    assert plan.gib()["total"] == pytest.approx(40.0, abs=0.01)


def test_gradient_checkpointing_keeps_one_layer_input_per_layer_and_one_full_layer():
    kwargs = dict(batch_size=8, seq_len=256, lora_r=20, lora_dropout=0.05, hio_rank=200)
    plan = plan_memory(LLAMA2_7B, gradient_checkpointing=True, **kwargs)
    outside = 6 * 4096 + 4 * 4096 + 4 * 32000
    kept = 2048 * (32 * 2 * 4096 + 395_320 + outside) + 2 * 156_737_536 // 32
    assert plan.parts["activations"] == kept
    assert plan.gib()["total"] == pytest.approx(16.84, abs=0.01)
    assert plan.total + plan.headroom == plan.total + GIB + plan.total // 10


def _small(layers: int, hidden: int = 256, ffn: int = 688) -> LlamaConfig:
    return LlamaConfig(hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers, vocab_size=1000,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)  # fmt: skip


def _measured(
    config: LlamaConfig, checkpointing: bool, dropout: float = 0.05, tokens: tuple = (2, 64)
) -> int:
    cfg = load_train_config("llama2-7b-a100", [f"lora_dropout={dropout}", "lora_r=8"])
    model = gpu_check.attach_adapters(build_random_model(config, torch.bfloat16, "cpu", 0), cfg,
                                      {"pruning_ratio": 0.25, "hio_rank": 16}).train()  # fmt: skip
    if checkpointing:
        gpu_check._checkpointing(model, True)
    from pat_lite import set_pat_step

    set_pat_step(model, 5)
    ids = torch.randint(0, config.vocab_size, tokens, generator=torch.Generator().manual_seed(0))
    return saved_activation_bytes(model, {"input_ids": ids, "labels": ids})


@pytest.mark.parametrize("dropout", [0.05, 0.0])
def test_the_activation_model_is_what_autograd_keeps(dropout):
    """In all and per layer (a 2-layer model less a 1-layer one), within 5 %, on a model with GQA."""
    measured = {layers: _measured(_small(layers), False, dropout) for layers in (1, 2)}
    planned = {
        layers: plan_memory(_small(layers), batch_size=2, seq_len=64, lora_r=8, lora_dropout=dropout,
                            hio_rank=16, gradient_checkpointing=False).parts["activations"]
        for layers in (1, 2)
    }  # fmt: skip
    assert measured[2] == pytest.approx(planned[2], rel=0.05)
    assert measured[2] - measured[1] == pytest.approx(planned[2] - planned[1], rel=0.05)


def test_with_checkpointing_each_layer_keeps_about_its_bf16_input():
    one, two = (_measured(_small(layers, hidden=512), True, tokens=(4, 128)) for layers in (1, 2))
    assert (two - one) / (4 * 128) == pytest.approx(2 * 512, rel=0.15)


# -------------------------------------------------------------------------------------------- projection
def test_the_recipe_has_about_30000_optimizer_steps_on_half_of_lamini():
    summary = gpu_check.recipe_summary(load_train_config("llama2-7b-a100"), rows=2_585_615)
    assert summary["rows"] == 1_292_807 and summary["global_batch"] == 8 * 16
    assert summary["optimizer_steps"] == math.ceil(1_292_807 * 3 / 128) == 30_301
    assert summary["micro_steps"] == 30_301 * 16


def test_the_projection_extends_the_one_and_two_layer_costs_linearly():
    one = {"step_ms": 300.0, "optimizer_ms": 10.0, "peak_gib": 3.0, "batch_size": 8, "seq_len": 256}
    two = {"step_ms": 400.0, "optimizer_ms": 12.0, "peak_gib": 3.5, "batch_size": 8, "seq_len": 256}
    projection = gpu_check.project(one, two, full_layers=32, micro_steps=1600, accumulation=16,
                                   plan_full_gib=17.0)  # fmt: skip
    # per layer 100 ms, fixed 200 ms: 32 layers → 3400 ms; optimizer 8 + 32·2 = 72 ms per optimizer step
    assert projection["micro_step_ms"] == pytest.approx(3400.0)
    assert projection["optimizer_step_ms"] == pytest.approx(72.0)
    assert projection["hours"] == pytest.approx((1600 * 3.4 + 100 * 0.072) / 3600)
    assert projection["gpu_hours"] == projection["hours"]  # one GPU
    assert projection["peak_gib"] == pytest.approx(2.5 + 32 * 0.5)
    assert projection["tokens_per_s"] == pytest.approx(2048 / 3.4)


def test_the_recipe_files_expected_memory_and_time_are_the_plans_figures():
    import re

    import yaml

    from pat_lite.bench.memory_plan import A100_BF16_TFLOPS, flop_hours, plan_for_recipe
    from pat_lite.resources import configs_dir

    expected = yaml.safe_load((configs_dir() / "llama2-7b-a100.yaml").read_text())["expected"]
    cfg = load_train_config("llama2-7b-a100")
    with_ckpt, without = (float(v) for v in re.findall(r"([\d.]+) GiB", expected["memory"]))
    assert with_ckpt == round(plan_for_recipe(cfg, LLAMA2_7B, True).total / GIB, 1)
    assert without == round(plan_for_recipe(cfg, LLAMA2_7B, False).total / GIB, 1)
    method = (Path(__file__).resolve().parents[1] / "docs" / "method.md").read_text()
    assert f"{with_ckpt} GiB for this recipe with gradient checkpointing, {without} GiB without" in method
    fast, slow = (int(v) for v in re.match(r"(\d+)-(\d+) h", expected["time"]).groups())
    tokens = gpu_check.recipe_summary(cfg, 2_585_615)["micro_steps"] * 8 * 256
    assert fast == round(flop_hours(LLAMA2_7B, tokens, A100_BF16_TFLOPS, 0.5))
    assert slow == round(flop_hours(LLAMA2_7B, tokens, A100_BF16_TFLOPS, 0.3))


# -------------------------------------------------------------------------------- the whole check, dry run
@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "report.json"
    status = cli.main(["gpu-check", "--cpu-dry-run", "--out", str(out)])
    return status, out


def test_the_cpu_dry_run_writes_a_report_with_the_schema(dry_run):
    status, out = dry_run
    report = json.loads(out.read_text())
    assert status == 0 and report["ok"]
    assert gpu_check.validate_report(report) == []
    assert report["dry_run"] is True and report["environment"]["device"] == "cpu"
    assert report["verdicts"][0].startswith("CPU DRY RUN: no GPU was measured")
    assert [run["name"] for run in report["runs"]][0] == "tiny"
    assert all(run["finite"] and run["peak_gib"] is None for run in report["runs"])  # no CUDA peak on a CPU
    for run in report["runs"]:  # the plan of what autograd keeps, against what it kept
        assert run["saved_activations_gib"] == pytest.approx(run["plan_activations_gib"], rel=0.05)
    float32 = [m for m in report["merge"] if m["dtype"] == "float32"]
    assert len(float32) == 2 and all(m["relative"] < 1e-4 for m in float32)
    assert set(report["plan"]) == {"with gradient checkpointing", "without gradient checkpointing"}
    assert report["plan"]["with gradient checkpointing"]["total"] == pytest.approx(16.84, abs=0.01)


def test_a_report_missing_parts_is_named_by_the_validator(dry_run):
    report = json.loads(dry_run[1].read_text())
    del report["projection"]
    report["runs"] = report["runs"][:1]
    del report["runs"][0]["peak_gib"]
    report["schema"] = "something else"
    problems = gpu_check.validate_report(report)
    assert "projection: missing" in problems and "runs[0].peak_gib: missing" in problems
    assert any(p.startswith("runs: 1 runs") for p in problems) and any(
        p.startswith("schema:") for p in problems
    )


def test_without_cuda_the_check_says_so_in_one_line_and_fails(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    status = cli.main(["gpu-check", "--out", str(tmp_path / "report.json")])
    err = capsys.readouterr().err
    assert status == cli.USER_ERROR_STATUS and not (tmp_path / "report.json").exists()
    (line,) = err.strip().splitlines()
    assert line.startswith("pat-lite: error: no CUDA device is visible") and "--cpu-dry-run" in line
