"""`pat-lite` on the command line: a user error is one line on stderr (no traceback); `--debug` shows the
traceback; a bug keeps its traceback; both spellings of `eval` parse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_models import tiny_checkpoint

from pat_lite import cli
from pat_lite.utils.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A finished-looking run folder: merged/ is a real (tiny random) model, adapter/ an adapter."""
    run = tmp_path_factory.mktemp("cli") / "run"
    tiny_checkpoint(run / "merged")
    (run / "adapter").mkdir()
    (run / "adapter" / "adapter_config.json").write_text("{}")
    (run / "run_config.yaml").write_text("model: tiny\n")
    (run / "train_summary.json").write_text("{}")
    return run


def _broken_yaml(tmp: Path) -> str:
    (tmp / "broken.yaml").write_text("max_steps: 3\npat: {hio_rank: 8\n")
    return str(tmp / "broken.yaml")


#: argv (given the run folder and a scratch folder) → what the one error line must say
USER_ERRORS = {
    "a wrong type": (lambda run, tmp: ["train", "--config", "tiny", "learning_rate=abc"],
                     "learning_rate='abc': expected a number"),
    "a YAML syntax error": (lambda run, tmp: ["train", "--config", _broken_yaml(tmp)],
                            "broken.yaml, line 3: invalid YAML"),
    "a folder as config": (lambda run, tmp: ["train", "--config", str(tmp)],
                           "is a folder: --config takes a YAML"),
    "a finished run in the way": (lambda run, tmp: ["train", "--config", "tiny", f"output_dir={run}"],
                                  "already holds a finished run"),
    "a missing model": (lambda run, tmp: ["train", "--config", "tiny", f"model={tmp}/nope",
                                          f"output_dir={tmp}/o"],
                        "no model folder at"),
    "eval of a missing folder": (lambda run, tmp: ["eval", "--model", str(tmp / "nope")],
                                 "no model folder at"),
    "eval of an adapter": (lambda run, tmp: ["eval", str(run / "adapter")], "use the run's merged model"),
    "eval with --limit 0": (lambda run, tmp: ["eval", str(run), "--limit", "0"], "limit=0.0: give a number"),
    "eval with --limit -3": (lambda run, tmp: ["eval", str(run), "--limit", "-3"],
                             "limit=-3.0: give a number"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(USER_ERRORS))
def test_a_user_error_is_one_line_on_stderr_without_a_traceback(case, run_folder, tmp_path, capsys):
    argv, message = USER_ERRORS[case]
    assert cli.main(argv(run_folder, tmp_path)) == cli.USER_ERROR_STATUS
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pat-lite: error: ") and message in lines[0], err
    assert not (tmp_path / "o").exists()


def test_debug_shows_the_traceback_before_or_after_the_command(tmp_path):
    for argv in (["--debug", "train", "max_steps=abc"], ["train", "--debug", "max_steps=abc"]):
        with pytest.raises(ConfigError, match="max_steps='abc'"):
            cli.main(argv)
    assert cli.build_parser().parse_args(["train"]).debug is False


def test_a_bug_is_not_disguised_as_a_user_error(monkeypatch):
    import pat_lite.training.run

    def broken(cfg):
        raise RuntimeError("a bug in pat_lite")

    monkeypatch.setattr(pat_lite.training.run, "train", broken)
    with pytest.raises(RuntimeError, match="a bug in pat_lite"):
        cli.main(["train", "--config", "tiny"])


def test_eval_takes_the_model_as_an_option_or_an_argument_but_not_both(capsys):
    parser = cli.build_parser()
    assert parser.parse_args(["eval", "--model", "m"]).model == "m"
    assert parser.parse_args(["eval", "m"]).checkpoint == "m"
    with pytest.raises(SystemExit):
        cli.main(["eval", "m", "--model", "m"])
    assert "give the checkpoint once" in capsys.readouterr().err


@pytest.mark.slow  # two fresh processes importing torch, transformers and peft
def test_the_installed_command_prints_exactly_one_line(tmp_path):
    """End to end, in a fresh process: stderr holds the error line and nothing else (no warnings either)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "default"}
    command = [sys.executable, "-m", "pat_lite.cli", "train", "--config", "tiny", "pat.hio_rank=abc"]
    message = "pat.hio_rank='abc': expected an integer (e.g. 100) or null"
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"pat-lite: error: {message}"]
    assert done.stdout == "" and list(tmp_path.iterdir()) == []
    with_debug = [*command[:3], "--debug", *command[3:]]
    debug = subprocess.run(with_debug, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1].endswith(message)


def test_a_summary_is_printed_as_json_on_success(monkeypatch, capsys):
    import pat_lite.training.run

    class Result:
        summary = {"steps": 2}

    monkeypatch.setattr(pat_lite.training.run, "train", lambda cfg: Result())
    assert cli.main(["train", "--config", "tiny"]) == 0
    assert json.loads(capsys.readouterr().out) == {"steps": 2}
