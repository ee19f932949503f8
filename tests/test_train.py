"""Training with Trainer + peft: schedule, resume, gradient checkpointing, DDP, outputs
(docs/method.md §5, §7)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import tiny_checkpoint, write_instruction_file
from transformers import AutoModelForCausalLM, TrainerCallback

from pat_lite.core.config import PATConfig
from pat_lite.core.mask import gate_offset, schedule_temperature
from pat_lite.core.slicing import norm_channels
from pat_lite.training.config import load_train_config, training_arguments
from pat_lite.training.mask_budget import released_budget
from pat_lite.training.run import last_complete_checkpoint, train
from pat_lite.training.trainer import MASK_HISTORY, PAT_STATE, load_mask_history
from pat_lite.utils.errors import ConfigError

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
        assert entry["tau"] == pytest.approx(schedule_temperature(step, S0, PATConfig().schedule))
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
    assert taus[6] == pytest.approx(schedule_temperature(5, S0, PATConfig().schedule))
    # ... and the run ends with the same PAT weights as the run that was never interrupted.
    for key, value in pat_state(tmp_path / "straight").items():
        torch.testing.assert_close(pat_state(tmp_path / "interrupted")[key], value, rtol=1e-5, atol=1e-6)
    assert straight.summary["steps"] == resumed.summary["steps"]
    # The mask history survives the resume: the snapshots taken before the checkpoint come back bit for bit,
    # the later ones are taken again, and the whole history matches the uninterrupted run's.
    saved_steps, saved = load_mask_history(tmp_path / "interrupted" / "checkpoint-5" / MASK_HISTORY)
    steps, history = load_mask_history(tmp_path / "interrupted" / MASK_HISTORY)
    straight_steps, straight_history = load_mask_history(tmp_path / "straight" / MASK_HISTORY)
    assert saved_steps.tolist() == [2, 4]
    assert steps.tolist() == straight_steps.tolist() == [2, 4, 6, 8, 10]
    assert torch.equal(history[:2], saved) and torch.equal(saved, straight_history[:2])
    torch.testing.assert_close(history, straight_history, rtol=1e-5, atol=1e-6)


def test_a_half_written_checkpoint_is_skipped(tmp_path):
    complete, broken = tmp_path / "checkpoint-5", tmp_path / "checkpoint-10"
    complete.mkdir()
    broken.mkdir()
    (complete / "trainer_state.json").write_text('{"global_step": 5, "max_steps": 10}')
    (complete / PAT_STATE).write_text("")
    (broken / "adapter_model.safetensors").write_text("")  # killed before trainer_state.json
    assert last_complete_checkpoint(tmp_path, "pat") == complete
    (broken / "trainer_state.json").write_text('{"global_st')  # killed while writing it
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
        train(settings(assets, tmp_path / "changed", max_steps=8), callbacks=[StopAt(6)])  # checkpoint-5
    with pytest.raises(FileExistsError, match=r"interrupted run with other settings \(max_steps: 8 → 10\)"):
        train(settings(assets, tmp_path / "changed", max_steps=10))
    result = train(settings(assets, tmp_path / "done", max_steps=2, overwrite_output_dir=True))
    assert result.summary["steps"] == 2


def test_bad_settings_are_refused_with_a_hint():
    with pytest.raises(ValueError, match="KEY=VALUE"):
        load_train_config(None, ["max_steps"])
    with pytest.raises(ValueError, match="unknown training settings"):
        load_train_config(None, ["max_stepz=3"])
    with pytest.raises(ValueError, match="unknown pat settings"):
        load_train_config(None, ["pat.ratio=0.3"])
    with pytest.raises(ConfigError, match=r"no config 'no-such-config'.*'tiny'"):
        load_train_config("no-such-config")


@pytest.mark.parametrize("name", ["tiny", "smollm2", "tinyllama", "llama2-7b-a100", "llama2-13b", "gemma-2b"])
def test_shipped_configs_load(name):
    cfg = load_train_config(name)
    assert cfg.pat_config.pruning_ratio or cfg.pat_config.target_width


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_is_one_run_that_ends_with_the_same_mask_on_both_ranks(assets, tmp_path):
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
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 6
    assert summary["processes"] == 2  # one data-parallel run of two processes, not two runs side by side


def test_yaml_off_means_the_identity_loss_variant_off():
    # YAML 1.1 reads a bare `off` as False; the PAT section must still mean the variant "off".
    assert load_train_config(None, ["pat.identity_loss=off"]).pat_config.identity_loss == "off"


# ------------------------------------------------------------------ schedules, the gap, the mask history
def gap_entries(log_history):
    return [entry for entry in log_history if "lm_loss_gap" in entry]


def test_paper_schedule_logs_the_train_eval_gap_which_is_zero_from_s0_on(assets, tmp_path):
    result = train(settings(assets, tmp_path / "paper", **{"pat.schedule": "paper"}))
    entries = gap_entries(result.log_history)
    assert [entry["step"] for entry in entries] == [2, 4, 6, 8, 10]
    for entry in entries:
        step = entry["step"] - 1  # the schedule step of the last forward, which the gap is measured at
        assert entry["tau"] == pytest.approx(schedule_temperature(step, S0, "paper"))
        assert entry["lm_loss_gap"] == entry["lm_loss_exact"] - entry["lm_loss_soft"]
        assert 0 < entry["lm_loss_soft"] < 100 and 0 < entry["lm_loss_exact"] < 100
        if step >= S0:  # Eq. 6: the training mask is the exact mask
            assert entry["lm_loss_soft"] == entry["lm_loss_exact"]
    # At step 1 the soft mask is sigmoid(W_M) + 1/3 ≈ 0.8 on every channel, the exact one cuts 16 of 64:
    # two different models, so the losses differ (this is what shows the gap is measured, not copied).
    assert entries[0]["lm_loss_soft"] != entries[0]["lm_loss_exact"]
    # W_M at every logging step; the last snapshot is the final mask.
    steps, history = load_mask_history(tmp_path / "paper" / MASK_HISTORY)
    assert steps.tolist() == [2, 4, 6, 8, 10] and history.shape == (5, 64)
    assert torch.equal(history[-1], pat_state(tmp_path / "paper")["mask.proxies"])
    assert not torch.equal(history[0], history[-1])


def test_the_training_log_figure_shows_the_gap(assets, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from pat_lite.notebook.plots import plot_training_log

    result = train(settings(assets, tmp_path / "run", max_steps=4))
    figure = plot_training_log(result.log_history, 48)
    gap_panel = figure.axes[3]
    assert "gap" in gap_panel.get_title()
    soft, exact = gap_panel.get_lines()
    assert list(soft.get_ydata()) == [e["lm_loss_soft"] for e in gap_entries(result.log_history)]
    assert list(exact.get_ydata()) == [e["lm_loss_exact"] for e in gap_entries(result.log_history)]


class RecordLearningRates(TrainerCallback):
    """The learning rate of every optimizer parameter group, at every step, as the optimizer uses it."""

    def __init__(self) -> None:
        self.rates: list[list[float]] = []

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        self.rates.append([group["lr"] for group in optimizer.param_groups])


def cosine_rates(lr: float, warmup: int, total: int, steps: int) -> list[float]:
    """transformers' linear warm-up + cosine decay, written out (independent of the code under test)."""
    import math

    return [
        lr * (s / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / (total - warmup))))
        for s in range(steps)
    ]


def test_the_released_recipes_travel_budget_is_computed_from_its_schedule():
    budget = sum(cosine_rates(5e-5, 100, 30_000, 8_000))  # W_M detached from 0.8 · s0 = 8,000 on
    assert released_budget() == pytest.approx(budget, rel=1e-9)
    assert released_budget() == pytest.approx(0.38, abs=0.01)  # docs/method.md §10


@pytest.mark.parametrize(("schedule", "moving_steps"), [("released", 5), ("paper", 6)])
def test_mask_lr_auto_gives_the_run_the_released_budget_under_its_own_schedule(
    assets, tmp_path, schedule, moving_steps
):
    recorder = RecordLearningRates()
    result = train(
        settings(assets, tmp_path / schedule, mask_lr_multiplier="auto", **{"pat.schedule": schedule}),
        callbacks=[recorder],
    )
    lora, hsm, mask = zip(*recorder.rates, strict=True)
    multiplier = result.summary["mask_lr_multiplier"]
    assert list(lora) == list(hsm) == pytest.approx(cosine_rates(0.01, 0, 10, 10))
    assert list(mask) == pytest.approx([multiplier * rate for rate in lora])
    # Σ of the mask's actual learning rate while the task loss moves it = the released recipe's budget.
    assert sum(mask[:moving_steps]) == pytest.approx(released_budget(), rel=1e-6)
    assert result.summary["mask_travel_budget"] == pytest.approx(released_budget(), rel=1e-6)
    logged = gap_entries(result.log_history)[0]
    assert logged["mask_lr_multiplier"] == multiplier and multiplier > 1


def test_a_number_as_mask_lr_multiplier_is_used_as_given_and_its_budget_logged(assets, tmp_path):
    recorder = RecordLearningRates()
    result = train(settings(assets, tmp_path / "x3", max_steps=4, mask_lr_multiplier=3), callbacks=[recorder])
    assert [mask / lora for lora, _, mask in recorder.rates] == pytest.approx([3.0] * 4)
    assert result.summary["mask_lr_multiplier"] == 3.0
    # s0 = 6 > 0.8 · s0 > 4 steps: the task loss moves W_M during the whole run.
    assert result.summary["mask_travel_budget"] == pytest.approx(3 * sum(cosine_rates(0.01, 0, 4, 4)))


def test_fixed_norm_cut_with_hsms_trains_and_merges_through_the_normal_path(assets, tmp_path):
    run = tmp_path / "fixed"
    overrides = {"pat.mask_mode": "fixed", "pat.fixed_channels": "norm", "lora_dropout": 0.0}
    result = train(settings(assets, run, **overrides))
    base = AutoModelForCausalLM.from_pretrained(assets[0])
    kept = json.loads((run / "merged" / "pat_kept.json").read_text())["kept_channels"]
    assert kept == norm_channels(base, 48).tolist()
    entries = gap_entries(result.log_history)
    assert entries and all(e["lm_loss_soft"] == e["lm_loss_exact"] for e in entries)  # 0/1 from step 0
    assert all("tau" not in e for e in entries) and "mask_lr_multiplier" not in result.summary
    state = pat_state(run)
    assert sorted(torch.nonzero(state["mask.proxies"] > 0).flatten().tolist()) == kept
    assert all(state[k].abs().sum() > 0 for k in state if k.endswith(".L1"))  # the HSMs did train
    ids = torch.tensor([[1, 5, 6, 7, 8, 9]])
    with torch.no_grad():
        tuned = result.model.eval()(input_ids=ids).logits
        assert (result.merged(ids).logits - tuned).abs().max().item() <= 1e-4


def test_mask_lr_multiplier_defaults_to_the_released_1_and_accepts_auto():
    assert load_train_config(None).mask_lr_multiplier == 1.0
    assert load_train_config(None, ["mask_lr_multiplier=auto"]).mask_lr_multiplier == "auto"
    assert load_train_config(None, ["mask_lr_multiplier=2.5"]).mask_lr_multiplier == 2.5
    for bad in ("fast", "0", "-1"):
        with pytest.raises(ValueError, match=r"mask_lr_multiplier=.*(expected a number|must be > 0).*'auto'"):
            load_train_config(None, [f"mask_lr_multiplier={bad}"])
    for recipe in ("llama2-7b-a100", "llama2-13b", "gemma-2b", "tinyllama"):  # "the paper's recipe"
        assert load_train_config(recipe).mask_lr_multiplier == 1.0


def test_pinned_memory_only_with_cuda_and_progress_not_left_to_the_logger_level():
    args = training_arguments(load_train_config("tiny", ["report_to=[]"]))
    assert args.dataloader_pin_memory is torch.cuda.is_available()  # torch warns when pinning without one
    assert args.disable_tqdm is False


def test_progress_false_drops_the_trainers_live_progress_bar_and_nothing_else(assets, tmp_path, capfd):
    bar = re.compile(r"100%\|[^|\n]*\| 2/2 \[")  # the Trainer's bar over max_steps=2; other bars have more
    loud = train(settings(assets, tmp_path / "loud", max_steps=2, lora_dropout=0.0))
    assert bar.search(capfd.readouterr().err)
    quiet = train(settings(assets, tmp_path / "quiet", max_steps=2, lora_dropout=0.0), progress=False)
    assert not bar.search(capfd.readouterr().err)
    assert quiet.summary["active_channels"] == loud.summary["active_channels"]
    assert torch.equal(
        pat_state(quiet.output_dir)["mask.proxies"], pat_state(loud.output_dir)["mask.proxies"]
    )
