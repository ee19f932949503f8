"""Nothing silently wrong (issue 18, cases 4, 5 and 7): a resume on changed inputs, a PAT state loaded onto
a model it was not made for, and settings that used to be accepted without a word.

Kills are real (a forked child ends with os._exit, see run_helpers).
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from run_helpers import KILLED, KillAtStep, callbacks_kill, folder_hashes, run_killed, tiny_settings
from safetensors.torch import load_file
from tiny_models import tiny_checkpoint, write_instruction_file
from transformers import AutoModelForCausalLM

from pat_lite import PATConfig, attach_pat, get_pat, set_pat_step
from pat_lite.training.run import train
from pat_lite.training.run_folder import SUMMARY, staging_dir
from pat_lite.training.trainer import PAT_CONFIG, PAT_STATE, load_pat_state
from pat_lite.utils.errors import CheckpointError, ConfigError, RunFolderError


@pytest.fixture
def assets(tmp_path):
    """A base and a data file of this test's own: the tests below change them."""
    return tiny_checkpoint(tmp_path / "base"), write_instruction_file(tmp_path / "data.jsonl")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("integrity")
    assets = tiny_checkpoint(root / "base"), write_instruction_file(root / "data.jsonl")
    train(tiny_settings(assets, root / "run"))
    return assets, root / "run"


def interrupted_run(assets, out) -> dict[str, str]:
    """A run killed at step 5 (its last checkpoint: 4); the hashes of its folder."""
    assert run_killed(lambda: train(tiny_settings(assets, out)), callbacks_kill(KillAtStep(5))) == KILLED
    assert (out / "checkpoint-4").is_dir() and not (out / SUMMARY).exists()
    return folder_hashes(out)


# ----------------------------------------------------------------- case 4: a resume on changed inputs
def test_a_resume_after_the_data_file_changed_is_refused_in_one_line(assets, tmp_path):
    """Before: the resumed run went on with the new records and ended matching neither run."""
    out = tmp_path / "run"
    before = interrupted_run(assets, out)
    write_instruction_file(assets[1], seed=1)  # same number of records, other ones
    with pytest.raises(
        RunFolderError, match=r"on other inputs: the instruction data .*data.jsonl changed"
    ) as e:
        train(tiny_settings(assets, out))
    assert "\n" not in str(e.value) and "Restore them to resume" in str(e.value)
    assert folder_hashes(out) == before


def test_a_resume_on_another_base_model_is_refused_in_one_line(assets, tmp_path):
    out = tmp_path / "run"
    before = interrupted_run(assets, out)
    shutil.rmtree(assets[0])
    tiny_checkpoint(assets[0], seed=1)  # same path, same shapes, other weights
    with pytest.raises(RunFolderError, match=r"on other inputs: the base model .*base changed since the run"):
        train(tiny_settings(assets, out))
    assert folder_hashes(out) == before


def test_with_overwrite_a_run_on_changed_inputs_is_replaced_not_resumed(assets, tmp_path, capsys):
    out = tmp_path / "run"
    before = interrupted_run(assets, out)
    write_instruction_file(assets[1], seed=1)
    capsys.readouterr()
    killed = run_killed(
        lambda: train(tiny_settings(assets, out, overwrite_output_dir=True)), callbacks_kill(KillAtStep(1))
    )
    assert killed == KILLED
    assert "resuming" not in capsys.readouterr().out
    assert folder_hashes(out) == before and staging_dir(out).is_dir()  # trains beside, from step 0


def test_the_same_inputs_resume_as_before(assets, tmp_path, capsys):
    out = tmp_path / "run"
    interrupted_run(assets, out)
    write_instruction_file(assets[1], seed=0)  # rewritten, same records: same fingerprint
    capsys.readouterr()
    assert train(tiny_settings(assets, out)).summary["steps"] == 6
    assert f"resuming from {out / 'checkpoint-4'}" in capsys.readouterr().out


# ---------------------------------------------------------- case 5: a PAT state on the wrong model
def pat_model(base, adapter, **changes):
    """`base` with PAT attached with the adapter's saved settings, `changes` applied."""
    model = AutoModelForCausalLM.from_pretrained(base)
    saved = json.loads((adapter / PAT_CONFIG).read_text())
    return attach_pat(model, PATConfig.from_dict({**saved, **changes}))


def test_a_pat_state_loads_onto_the_base_and_settings_it_was_made_with(finished_run):
    (base, _), run = finished_run
    model = pat_model(base, run / "adapter")
    load_pat_state(model, run / "adapter")
    saved = load_file(str(run / "adapter" / PAT_STATE))
    assert all(torch.equal(v, saved[k]) for k, v in get_pat(model).state_dict().items())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"hio_rank": 8}, r"other PAT settings than this model's \(hio_rank: saved 4, here 8\)"),
        ({"target_width": 32}, r"other PAT settings than this model's \(target_width: saved 48, here 32\)"),
    ],
)
def test_a_pat_state_with_other_settings_is_refused_in_one_line(changes, message, finished_run):
    """Before: another hio_rank gave a raw size-mismatch dump, another target_width merged to the wrong
    width without a word."""
    (base, _), run = finished_run
    model = pat_model(base, run / "adapter", **changes)
    with pytest.raises(CheckpointError, match=message) as e:
        load_pat_state(model, run / "adapter")
    assert "\n" not in str(e.value)


def test_a_pat_state_on_another_base_of_the_same_shapes_is_refused_in_one_line(finished_run, tmp_path):
    """Before: it merged silently (logits 0.72 away from the tuned model's)."""
    _, run = finished_run
    other = tiny_checkpoint(tmp_path / "other-base", seed=1)
    model = pat_model(other, run / "adapter")
    with pytest.raises(
        CheckpointError, match=r"was tuned on another base model \(.*base, fingerprint \w+\) than"
    ):
        load_pat_state(model, run / "adapter")


def test_the_base_fingerprint_ignores_the_dtype_it_was_loaded_in(finished_run):
    from pat_lite.core.identity import base_fingerprint

    (base, _), _ = finished_run
    fp32 = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    bf16 = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16)
    assert base_fingerprint(fp32) == base_fingerprint(bf16)


# --------------------------------------------------------- case 7: accepted without a word, until now
@pytest.mark.parametrize(
    ("step", "total", "message"),
    [
        (7, 6, r"step=7 must be in \[0, total_steps=6\]"),
        (-1, 6, r"step=-1 must be in \[0, total_steps=6\]"),
        (2.5, 6, r"step=2.5 must be a whole number"),
        (2, 6.5, r"total_steps=6.5 must be a whole number"),
    ],
)
def test_set_pat_step_refuses_a_step_beyond_the_total_negative_or_fractional(step, total, message):
    model = attach_pat(AutoModelForCausalLM.from_config(_tiny_config()), PATConfig(hio_rank=4))
    with pytest.raises(ConfigError, match=message):
        set_pat_step(model, step, total)
    set_pat_step(model, 6.0, 6)  # a whole number given as a float is fine
    assert get_pat(model).mask.step == 6


def _tiny_config():
    from tiny_models import TINY_CONFIGS

    return TINY_CONFIGS["llama-gqa"]


def test_pruning_ratio_that_leaves_less_than_the_narrowest_width_is_refused():
    """Before: pruning_ratio=0.999 silently became width 4 (a 94 % cut) on a 64-wide model."""
    with pytest.raises(ValueError, match=r"pruning ratio 0.999 keeps 0.064 of 64 channels, fewer than the"):
        PATConfig(pruning_ratio=0.999).resolve(_tiny_config())
    assert PATConfig(pruning_ratio=0.95).resolve(_tiny_config()).target_width == 4  # nearest: 3.2 → 4


def test_a_milestone_beyond_the_run_is_one_warning_line(assets, tmp_path, capfd):
    """s0 > max_steps: the gate never hardens. A user trying a long recipe briefly may mean it: a warning."""
    train(tiny_settings(assets, tmp_path / "run", max_steps=2))  # s0 = 4
    warnings = [line for line in capfd.readouterr().err.splitlines() if "warning:" in line]
    assert warnings == [
        "[pat_lite] warning: pat.milestone_step=4 is beyond the run's 2 optimizer steps: the gate never "
        "reaches its exact 0/1 mask, so the merged model is not the model trained (give s0 ≤ 2, or leave it "
        "unset for milestone_fraction × steps)"
    ]
