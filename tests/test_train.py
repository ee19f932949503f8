"""Training with Trainer + peft: schedule, resume, gradient checkpointing, DDP, outputs (spec §5, §7)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import tiny_checkpoint, write_instruction_file
from transformers import AutoModelForCausalLM, TrainerCallback

from pat_lite.core.mask import gate_offset, gate_temperature
from pat_lite.training.config import load_train_config
from pat_lite.training.run import last_complete_checkpoint, train
from pat_lite.training.trainer import PAT_STATE

S0 = 6


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_assets")
    return tiny_checkpoint(root / "base"), write_instruction_file(root / "data.jsonl")


def settings(assets, output_dir, **extra):
    base, data = assets
    values = {
        "model": str(base),
        "data": str(data),
        "data_fraction": 1.0,
        "output_dir": str(output_dir),
        "max_steps": 10,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "learning_rate": 0.01,
        "warmup_steps": 0,
        "logging_steps": 2,
        "save_steps": 5,
        "max_length": 32,
        "report_to": "[]",
        "pat.hio_rank": 4,
        "pat.milestone_step": S0,
    } | extra
    return load_train_config(None, [f"{k}={v}" for k, v in values.items()])


def pat_state(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "adapter" / PAT_STATE))


def test_schedule_follows_the_global_step_and_is_logged(assets, tmp_path):
    result = train(settings(assets, tmp_path / "run"))
    logged = [entry for entry in result.log_history if "tau" in entry]
    assert [entry["step"] for entry in logged] == [2, 4, 6, 8, 10]
    for entry in logged:
        step = entry["step"] - 1  # the step of the last forward before this log line
        assert entry["tau"] == pytest.approx(gate_temperature(step, S0))
        assert entry["beta"] == pytest.approx(gate_offset(step, S0))
        assert {"lm_loss", "sparsity_loss", "identity_loss", "active_channels"} <= set(entry)
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["merged_hidden_size"] == 48 and summary["original_hidden_size"] == 64
    kept = json.loads((tmp_path / "run" / "merged" / "pat_kept.json").read_text())
    assert len(kept["kept_channels"]) == 48
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "merged")
    assert merged.config.hidden_size == 48


class StopAt(TrainerCallback):
    """Simulates a crash right after optimizer step `step`."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt(f"killed at step {self.step}")


def test_an_interrupted_run_resumes_with_the_same_command_and_ends_where_an_uninterrupted_one_does(
    assets, tmp_path
):
    straight = train(settings(assets, tmp_path / "straight"))
    interrupted_cfg = settings(assets, tmp_path / "interrupted")
    with pytest.raises(KeyboardInterrupt):
        train(interrupted_cfg, callbacks=[StopAt(7)])
    assert not (tmp_path / "interrupted" / "train_summary.json").exists()
    assert last_complete_checkpoint(tmp_path / "interrupted", "pat").name == "checkpoint-5"
    resumed = train(settings(assets, tmp_path / "interrupted"))
    assert resumed.summary["steps"] == 10
    # The log after the resume continues the schedule at the right step ...
    taus = {e["step"]: e["tau"] for e in resumed.log_history if "tau" in e}
    assert taus[6] == pytest.approx(gate_temperature(5, S0))
    # ... and the run ends with the same PAT weights as the run that was never interrupted.
    for key, value in pat_state(tmp_path / "straight").items():
        torch.testing.assert_close(pat_state(tmp_path / "interrupted")[key], value, rtol=1e-5, atol=1e-6)
    assert straight.summary["steps"] == resumed.summary["steps"]


def test_a_half_written_checkpoint_is_skipped(tmp_path):
    complete, broken = tmp_path / "checkpoint-5", tmp_path / "checkpoint-10"
    complete.mkdir()
    broken.mkdir()
    (complete / "trainer_state.json").write_text("{}")
    (complete / PAT_STATE).write_text("")
    (broken / "adapter_model.safetensors").write_text("")  # killed before trainer_state.json
    assert last_complete_checkpoint(tmp_path, "pat") == complete


def test_gradient_checkpointing_trains_the_same_model(assets, tmp_path):
    plain = train(settings(assets, tmp_path / "plain", max_steps=4, lora_dropout=0.0))
    checkpointed = train(
        settings(assets, tmp_path / "ckpt", max_steps=4, lora_dropout=0.0, gradient_checkpointing=True)
    )
    assert any(getattr(m, "gradient_checkpointing", False) for m in checkpointed.model.modules())
    assert not any(getattr(m, "gradient_checkpointing", False) for m in plain.model.modules())
    losses = [e["loss"] for e in plain.log_history if "loss" in e]
    assert losses == pytest.approx([e["loss"] for e in checkpointed.log_history if "loss" in e], rel=1e-4)
    for key, value in pat_state(tmp_path / "plain").items():
        torch.testing.assert_close(pat_state(tmp_path / "ckpt")[key], value, rtol=1e-4, atol=1e-5)


def test_plain_lora_baseline_uses_the_same_path_without_hsms(assets, tmp_path):
    result = train(settings(assets, tmp_path / "lora", method="lora", max_steps=2))
    assert result.merged.config.hidden_size == 64
    assert not (tmp_path / "lora" / "adapter" / PAT_STATE).exists()
    assert "tau" not in json.dumps(result.log_history)


def test_output_folders_are_never_overwritten_silently(assets, tmp_path):
    train(settings(assets, tmp_path / "done", max_steps=2))
    with pytest.raises(FileExistsError, match="finished run"):
        train(settings(assets, tmp_path / "done", max_steps=2))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a pat_lite run folder"):
        train(settings(assets, tmp_path / "other", max_steps=2))
    with pytest.raises(KeyboardInterrupt):
        train(settings(assets, tmp_path / "changed", max_steps=4), callbacks=[StopAt(1)])
    with pytest.raises(FileExistsError, match="different settings"):
        train(settings(assets, tmp_path / "changed", max_steps=8))
    result = train(settings(assets, tmp_path / "done", max_steps=2, overwrite_output_dir=True))
    assert result.summary["steps"] == 2


def test_bad_settings_are_refused_with_a_hint():
    with pytest.raises(ValueError, match="KEY=VALUE"):
        load_train_config(None, ["max_steps"])
    with pytest.raises(ValueError, match="unknown training settings"):
        load_train_config(None, ["max_stepz=3"])
    with pytest.raises(ValueError, match="unknown PATConfig fields"):
        load_train_config(None, ["pat.ratio=0.3"])
    with pytest.raises(FileNotFoundError, match="tiny"):
        load_train_config("no-such-config")


@pytest.mark.parametrize("name", ["tiny", "smollm2", "tinyllama", "llama2-7b-a100", "llama2-13b", "gemma-2b"])
def test_shipped_configs_load(name):
    cfg = load_train_config(name)
    assert cfg.pat_config.pruning_ratio or cfg.pat_config.target_width


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_ends_with_the_same_mask_on_both_ranks(assets, tmp_path):
    base, data = assets
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
        str(Path(__file__).with_name("ddp_train_worker.py")),
        f"model={base}", f"data={data}", "data_fraction=1.0", f"output_dir={out}", "max_steps=6",
        "per_device_train_batch_size=2", "learning_rate=0.01", "warmup_steps=0", "logging_steps=2",
        "save_steps=100", "max_length=32", "report_to=[]", "pat.hio_rank=4", f"pat.milestone_step={S0}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rank0 = load_file(str(out / "mask_rank0.safetensors"))["proxies"]
    rank1 = load_file(str(out / "mask_rank1.safetensors"))["proxies"]
    assert torch.equal(rank0, rank1)
    assert rank0.abs().sum() > 0  # the mask did train
    assert json.loads((out / "train_summary.json").read_text())["steps"] == 6


def test_yaml_off_means_the_identity_loss_variant_off():
    # YAML 1.1 reads a bare `off` as False; the PAT section must still mean the variant "off".
    assert load_train_config(None, ["pat.identity_loss=off"]).pat_config.identity_loss == "off"
