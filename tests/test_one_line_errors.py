"""One line instead of a traceback, before any work (issue 18, case 8).

Each case is what a new user met: a traceback, or a message only after the whole training, evaluation or
benchmark had run. Now every output location is checked before the work starts, a full disk says so and
names the folder, and a wrong name, device, checkpoint or setting is one line naming it.

Read-only locations: the tests run as root, for whom `chmod` does not make a folder read-only, so a
read-only location is simulated by making `os.access` answer "not writable" for it (in this process),
and "under a file" is a real path under a regular file. A full disk is simulated by making the write
raise what a full disk raises (OSError ENOSPC; torch's zip writer's "unexpected pos").
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from run_helpers import error_line, folder_hashes, run_cli, tiny_overrides, tiny_settings
from safetensors.torch import load_file, save_file
from tiny_models import TINY_CONFIGS, tiny_checkpoint, write_instruction_file
from transformers import LlamaModel

import pat_lite.training.trainer as trainer_module
from pat_lite import PATConfig, attach_pat, cli
from pat_lite.evaluation.lmeval import evaluate
from pat_lite.training.run import train
from pat_lite.training.run_folder import SUMMARY
from pat_lite.utils import errors
from pat_lite.utils.errors import CheckpointError, ConfigError

TOY_FIXTURES = Path(__file__).parent / "fixtures" / "toy"


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("one_line_assets")
    return tiny_checkpoint(root / "base"), write_instruction_file(root / "data.jsonl")


def one_line(capsys) -> str:
    """The single `pat-lite: error: ...` line of the command just run (no traceback), checked."""
    line = error_line(capsys.readouterr().err)
    assert line.startswith("pat-lite: error: ")
    return line


# ------------------------------------------------------------------------- output locations, train
def _under_a_file(tmp: Path) -> str:
    (tmp / "notes.txt").write_text("a file")
    return str(tmp / "notes.txt" / "run")


LOCATIONS = {
    "under a file": (_under_a_file, r"cannot create output_dir .*notes.txt/run: .*notes.txt is a file"),
    "the current folder": (lambda tmp: ".", r"output_dir='\.' is not a folder of its own"),
    "the folder above": (lambda tmp: "..", r"output_dir='\.\.' is not a folder of its own"),
    "a folder above, by name": (lambda tmp: str(tmp.parent), r"is the current folder or a folder above it"),
}


@pytest.mark.parametrize("case", list(LOCATIONS))
def test_an_output_dir_that_cannot_be_a_run_folder_is_one_line_before_any_work(
    case, assets, tmp_path, monkeypatch, capsys
):
    make, message = LOCATIONS[case]
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    # A missing model too: were the model loaded first, the error would name it instead.
    overrides = tiny_overrides(assets, make(tmp_path), model=str(tmp_path / "no-model"))
    before = folder_hashes(tmp_path)
    assert cli.main(["train", *overrides]) == cli.USER_ERROR_STATUS
    assert re.search(message, one_line(capsys)), message
    assert folder_hashes(tmp_path) == before and sorted(p.name for p in work.iterdir()) == []


def test_a_read_only_output_location_is_one_line_before_any_work(assets, tmp_path, monkeypatch, capsys):
    """Read-only simulated: `os.access` says the parent folder cannot be written (see the module doc)."""
    parent = tmp_path / "readonly"
    parent.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != parent and real_access(p, mode, **kw))
    overrides = tiny_overrides(assets, parent / "run", model=str(tmp_path / "no-model"))
    assert cli.main(["train", *overrides]) == cli.USER_ERROR_STATUS
    assert f"cannot write output_dir {parent / 'run'}: {parent} is read-only here" in one_line(capsys)
    assert list(parent.iterdir()) == []


# ----------------------------------------------------------------------- output locations, eval/bench
def test_eval_out_dir_that_is_a_file_is_refused_before_the_evaluation(assets, tmp_path, capsys):
    """Before: the whole evaluation ran, then the write failed with a traceback."""
    target = tmp_path / "results.txt"
    target.write_text("mine")
    argv = ["eval", "--model", str(assets[0]), "--tasks", "toy", "--toy-dir", str(TOY_FIXTURES),
            "--limit", "2", "--scoring", "loglik", "--out-dir", str(target)]  # fmt: skip
    assert cli.main(argv) == cli.USER_ERROR_STATUS
    captured = capsys.readouterr()
    assert f"--out-dir {target} is a file, not a folder" in error_line(captured.err)
    assert "|" not in captured.out and target.read_text() == "mine"  # no table: nothing was evaluated


@pytest.mark.parametrize("command", ["bench", "bench-train"])
def test_bench_out_that_is_a_file_is_refused_before_the_benchmark(command, assets, tmp_path, capsys):
    """Before: the whole benchmark ran, then the CSV could not be written."""
    target = tmp_path / "bench.txt"
    target.write_text("mine")
    assert cli.main([command, "--config", str(assets[0]), "--out", str(target)]) == cli.USER_ERROR_STATUS
    captured = capsys.readouterr()
    assert f"--out {target} is a file, not a folder" in error_line(captured.err)
    assert "[bench" not in captured.out and target.read_text() == "mine"


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (lambda tmp: _under_a_file(tmp) + ".json", r"cannot create --out .*notes.txt/run.json: .* is a file"),
        (lambda tmp: str(tmp), r"--out '.*' is a folder, not a file: give a file name"),
    ],
)
def test_gpu_check_out_that_cannot_be_written_is_refused_before_the_check(where, message, tmp_path, capsys):
    """gpu-check writes one report file at its end: its location is checked first (before: after minutes
    of steps, or not at all)."""
    assert cli.main(["gpu-check", "--cpu-dry-run", "--out", where(tmp_path)]) == cli.USER_ERROR_STATUS
    captured = capsys.readouterr()
    assert re.search(message, error_line(captured.err)) and "[gpu-check]" not in captured.out


# ------------------------------------------------------------------------------------------ full disk
def test_a_full_disk_during_training_is_one_line_and_the_same_command_resumes(
    assets, tmp_path, monkeypatch, capsys
):
    """ENOSPC simulated: saving the PAT state of checkpoint-6 raises it (checkpoint-4 was saved)."""
    out = tmp_path / "run"
    real_save = trainer_module.save_file

    def save_until_full(tensors, path, metadata=None):
        if "checkpoint-6" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(tensors, path, metadata=metadata)

    monkeypatch.setattr(trainer_module, "save_file", save_until_full)
    assert cli.main(["train", *tiny_overrides(assets, out)]) == cli.USER_ERROR_STATUS
    line = one_line(capsys)
    assert f"no space left on the disk holding {out} (" in line and " free) while writing the run" in line
    assert "run the same command again" in line
    monkeypatch.setattr(trainer_module, "save_file", real_save)  # space was freed
    assert cli.main(["train", *tiny_overrides(assets, out)]) == 0
    assert f"resuming from {out / 'checkpoint-4'}" in capsys.readouterr().out
    assert (out / SUMMARY).exists()


def test_torchs_unexpected_pos_on_a_full_disk_is_read_as_a_full_disk(assets, tmp_path, monkeypatch, capsys):
    """torch's zip writer reports a failed write as "unexpected pos 10688 vs 10580" (the issue's message),
    without the OS error; with the disk (simulated) full, that is a full disk, said in one line."""
    out = tmp_path / "run"
    real_save = torch.save

    def full(obj, f, *args, **kwargs):
        if "checkpoint-" in str(f):
            raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 10688 vs 10580")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full)
    monkeypatch.setattr("pat_lite.utils.output.free_bytes", lambda folder: 4096)
    assert cli.main(["train", *tiny_overrides(assets, out)]) == cli.USER_ERROR_STATUS
    assert f"no space left on the disk holding {out} (4.0 KiB free)" in one_line(capsys)


# ----------------------------------------------------------------------------- the SmolLM2 cache
@pytest.mark.parametrize("command", ["eval", "train"])
def test_an_unwritable_pat_lite_cache_is_one_line_before_converting_smollm2(command, assets, tmp_path):
    """PAT_LITE_CACHE under a regular file, through the real entry point: one line naming the cache before
    any conversion (before: the conversion's work ran first)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cache = blocker / "cache"
    argv = {
        "eval": ["eval", "--model", "smollm2-135m", "--tasks", "toy", "--toy-dir", str(TOY_FIXTURES)],
        "train": ["train", *tiny_overrides(assets, tmp_path / "run", model="smollm2-135m")],
    }[command]
    done = run_cli(argv, cwd=tmp_path, PAT_LITE_CACHE=str(cache))
    assert done.returncode == cli.USER_ERROR_STATUS, done.stderr[-3000:]
    line = error_line(done.stderr)
    assert f"cannot create the pat_lite cache {cache}" in line and "PAT_LITE_CACHE" in line
    assert not (tmp_path / "run").exists()


# -------------------------------------------------------------------------- evaluation of bad folders
def _config_disagrees(folder: Path) -> None:
    text = (folder / "config.json").read_text().replace('"intermediate_size": 96', '"intermediate_size": 200')
    (folder / "config.json").write_text(text)


BROKEN_CHECKPOINTS = {
    "a config that disagrees with the weights": (
        _config_disagrees,
        r"config.json does not fit the weights \(model.layers.0.mlp.down_proj.weight is \[64, 96\] in the "
        r"weights, \[64, 200\] by the config",
    ),
    "no tokenizer.json": (lambda f: (f / "tokenizer.json").unlink(), r"cannot load the tokenizer in .*model"),
    "a config that is not JSON": (
        lambda f: (f / "config.json").write_text("{not json"),
        r"model/config.json is not valid JSON",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN_CHECKPOINTS))
def test_evaluating_a_broken_checkpoint_is_one_line_naming_it(case, assets, tmp_path, capsys):
    breaking, message = BROKEN_CHECKPOINTS[case]
    folder = shutil.copytree(assets[0], tmp_path / "model")
    breaking(folder)
    argv = ["eval", "--model", str(folder), "--tasks", "toy", "--toy-dir", str(TOY_FIXTURES), "--limit", "2"]
    assert cli.main(argv) == cli.USER_ERROR_STATUS
    assert re.search(message, one_line(capsys)), message


# ---------------------------------------------------------------------------------- names and devices
@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        ("toy,toy", "toy is a task set: give it alone (--tasks toy), not in a list of tasks"),
        ("toy_city,toy_city", "the tasks list toy_city more than once"),
    ],
)
def test_a_task_list_with_a_set_or_a_repeat_is_one_line(tasks, message, assets, capsys):
    argv = ["eval", "--model", str(assets[0]), "--tasks", tasks, "--toy-dir", str(TOY_FIXTURES)]
    assert cli.main(argv) == cli.USER_ERROR_STATUS
    assert message in one_line(capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("command", ["eval", "bench", "bench-train"])
def test_device_cuda_without_cuda_is_one_line(command, assets, tmp_path, capsys):
    argv = {
        "eval": ["eval", "--model", str(assets[0]), "--tasks", "toy", "--toy-dir", str(TOY_FIXTURES)],
        "bench": ["bench", "--config", str(assets[0]), "--out", str(tmp_path / "b")],
        "bench-train": ["bench-train", "--config", str(assets[0]), "--out", str(tmp_path / "b")],
    }[command]
    assert cli.main([*argv, "--device", "cuda"]) == cli.USER_ERROR_STATUS
    why = "(this torch build has no CUDA|no CUDA GPU is visible)"
    assert re.search(rf"--device cuda: {why} here; use --device cpu", one_line(capsys))


def test_bench_of_a_missing_local_path_names_the_path(tmp_path, capsys):
    """Before: the hub's "Repo id must be in the form ..." message, after argparse's usage."""
    missing = tmp_path / "no" / "model"
    assert (
        cli.main(["bench", "--config", str(missing), "--out", str(tmp_path / "b")]) == cli.USER_ERROR_STATUS
    )
    assert f"no model folder at {missing}: no such file or folder" in one_line(capsys)


# ---------------------------------------------------------------------------------- the Python API
def test_pat_config_refuses_a_fractional_rank():
    with pytest.raises(ConfigError, match=r"^hio_rank=2.5: expected an integer"):
        PATConfig(hio_rank=2.5)
    assert PATConfig(hio_rank=4.0).hio_rank == 4  # a whole number is accepted, as an int


def test_attach_pat_on_a_module_that_is_not_a_supported_model_is_one_line():
    with pytest.raises(ConfigError, match=r"^attach_pat needs a transformers causal LM .*not a Linear$"):
        attach_pat(torch.nn.Linear(4, 4))
    with pytest.raises(
        ConfigError, match=r"not the bare decoder LlamaModel: load it with AutoModelForCausalLM"
    ):
        attach_pat(LlamaModel(TINY_CONFIGS["llama-gqa"]))


# ------------------------------------------------------------------------------- non-finite logits (3)
def _nan_model(source: Path, folder: Path) -> Path:
    shutil.copytree(source, folder)
    weights = load_file(str(folder / "model.safetensors"))
    weights["lm_head.weight"] = torch.full_like(weights["lm_head.weight"], float("nan"))
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def test_evaluating_a_model_whose_logits_are_nan_is_an_error_naming_it(assets, tmp_path, capsys):
    """Issue 18, case 3: before, a model with NaN logits scored 21.7 % (chance) without a word."""
    model = _nan_model(assets[0], tmp_path / "nan-model")
    argv = ["eval", "--model", str(model), "--tasks", "toy", "--toy-dir", str(TOY_FIXTURES), "--limit", "2",
            "--scoring", "loglik", "--out-dir", str(tmp_path / "results")]  # fmt: skip
    assert cli.main(argv) == cli.USER_ERROR_STATUS
    captured = capsys.readouterr()
    line = error_line(captured.err)
    assert f"{model} returns logits that are not finite" in line and "|" not in captured.out
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_training_on_a_model_whose_loss_is_nan_stops_with_one_line(assets, tmp_path):
    model = _nan_model(assets[0], tmp_path / "nan-model")
    with pytest.raises(
        Exception, match=r"the training loss of .*nan-model is not finite at step 0"
    ) as raised:
        train(tiny_settings(assets, tmp_path / "run", model=str(model)))
    assert type(raised.value).__name__ == "NumericalError" and "\n" not in str(raised.value)


def test_the_in_memory_evaluation_checks_the_logits_too(assets):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(assets[0])
    with torch.no_grad():
        model.lm_head.weight.fill_(float("inf"))
    tokenizer = AutoTokenizer.from_pretrained(assets[0])
    with pytest.raises(errors.NumericalError, match=r"LlamaForCausalLM returns logits that are not finite"):
        evaluate(model, tokenizer, tasks="toy", toy_dir=TOY_FIXTURES, limit=2)
    with pytest.raises(CheckpointError):  # (the folder checks still come first)
        evaluate(str(assets[0].parent / "missing"), tasks="toy", toy_dir=TOY_FIXTURES)
