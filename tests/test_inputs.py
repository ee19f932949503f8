"""Bad input is refused in one line naming what is wrong, before anything on disk changes.

Every failed start below runs against an output folder that already holds a finished run, with
overwrite_output_dir=true (the most dangerous flag): the old run's files must hash the same afterwards and
nothing may appear beside it. The accepted conversions (YAML 1.1 reads 1e-4 as a string) are checked too.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from run_helpers import folder_hashes, tiny_settings
from tiny_models import tiny_checkpoint, write_instruction_file

from pat_lite.evaluation.lmeval import evaluate
from pat_lite.training.config import TrainConfig, load_train_config
from pat_lite.training.run import pat_train, train
from pat_lite.utils.checkpoints import check_model_folder
from pat_lite.utils.errors import CheckpointError, ConfigError, DataError, PatLiteError

TOY_FIXTURES = Path(__file__).parent / "fixtures" / "toy"


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("input_assets")
    return tiny_checkpoint(root / "base"), write_instruction_file(root / "data.jsonl")


@pytest.fixture(scope="module")
def finished_run(assets, tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    train(tiny_settings(assets, out, max_steps=2))
    return out


# ---------------------------------------------------------------------------------- bad files, made here
def jsonl(path: Path, records: list, tail: str = "") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    return path


GOOD = [{"instruction": "where does alba live", "response": "alba lives in veldra ."}] * 6


def _non_utf8(path: Path) -> Path:
    path.write_bytes(b'{"instruction": "a", "response": "b"}\n{"instruction": "caf\xe9", "response": "b"}\n')
    return path


def _corrupted_model(assets, root: Path) -> Path:
    broken = shutil.copytree(assets[0], root / "broken_model")
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return broken


@dataclass
class Scene:
    assets: tuple[Path, Path]
    scratch: Path  # a folder for the bad files of one case
    finished_run: Path


def given(**values):
    return lambda scene: values


def data_file(records: list, tail: str = "", **values):
    return lambda scene: {"data": str(jsonl(scene.scratch / "d.jsonl", records, tail)), **values}


def data_path(make):
    return lambda scene: {"data": str(make(scene.scratch / "d.jsonl"))}


def model(make):
    return lambda scene: {"model": str(make(scene))}


#: case → (settings that break the start, given a Scene; the error type; its message, a regex)
FAILED_STARTS = {
    # settings: type and range, from keyword arguments (YAML and KEY=VALUE are converted the same way)
    "learning_rate not a number": (given(learning_rate="abc"), ConfigError,
                                   r"^learning_rate='abc': expected a number"),
    "warmup_steps not an integer": (given(warmup_steps=2.5), ConfigError,
                                    r"^warmup_steps=2.5: expected an integer"),
    "max_steps not an integer": (given(max_steps="abc"), ConfigError,
                                 r"^max_steps='abc': expected an integer"),
    "pat.hio_rank not an integer": (given(**{"pat.hio_rank": "abc"}), ConfigError,
                                    r"^pat.hio_rank='abc': expected an integer"),
    "merge not a boolean": (given(merge="maybe"), ConfigError, r"^merge='maybe': expected true or false"),
    "method unknown": (given(method="dora"), ConfigError, r"^method='dora': expected one of 'pat', 'lora'"),
    "data_fraction zero": (given(data_fraction=0), ConfigError, r"data_fraction=0.0: must be a fraction"),
    "unknown setting": (given(max_stepz=3), ConfigError, r"unknown training settings \['max_stepz'\]"),
    "unknown pat setting": (given(**{"pat.ratio": 0.3}), ConfigError, r"unknown pat settings \['ratio'\]"),
    "optimizer unknown to the Trainer": (given(optim="adamw_bogus"), ConfigError,
                                         r"the Trainer refuses these settings: adamw_bogus is not a valid"),
    # widths the model cannot hold
    "width not a multiple of the heads": (given(**{"pat.target_width": 50}), ConfigError,
                                          r"model .*base: .*multiple of num_attention_heads=4"),
    "width not smaller than the model": (given(**{"pat.target_width": 64}), ConfigError,
                                         r"not smaller than the model's hidden size 64"),
    # models
    "corrupted model.safetensors": (model(lambda s: _corrupted_model(s.assets, s.scratch)), CheckpointError,
                                    r"broken_model/model.safetensors is corrupted or incomplete"),
    "missing model folder": (model(lambda s: s.scratch / "no" / "model"), CheckpointError,
                             r"no model folder at .*no/model"),
    "a run folder as the model": (model(lambda s: s.finished_run), CheckpointError,
                                  r"is a pat_lite run folder, not a model: use .*run/merged"),
    # instruction data
    "a record missing response": (data_file([*GOOD[:3], {"instruction": "x"}]), DataError,
                                  r"d.jsonl: line 4: no 'response'"),
    "an empty file": (data_file([]), DataError, r"d.jsonl: the file is empty"),
    "a file of blank lines": (data_file([], "\n\n"), DataError, r"d.jsonl: the file holds no records"),
    "a non-UTF-8 file": (data_path(_non_utf8), DataError, r"d.jsonl: line 2: not UTF-8 text \(byte 0xe9\)"),
    "a non-JSON file": (data_file([], "instruction,response\na,b\n"), DataError,
                        r"d.jsonl: line 1: not valid JSON"),
    "integer columns": (data_file([{"instruction": 1, "response": 2}]), DataError,
                        r"d.jsonl: line 1: 'instruction' is int 1, expected a string"),
    "one integer among strings": (data_file([*GOOD, {"instruction": "x", "response": 5}]), DataError,
                                  r"d.jsonl: line 7: 'response' is int 5, expected a string"),
    "a data file that does not exist": (data_path(lambda path: path.with_name("typo.jsonl")), PatLiteError,
                                        r"no instruction data at .*typo.jsonl: no such file"),
    "a data_fraction that leaves 0 examples": (data_file(GOOD, data_fraction=0.1), DataError,
                                               r"d.jsonl: data_fraction=0.1 of its 6 records leaves 0"),
    "a max_length that leaves 0 examples": (given(max_length=4), DataError,
                                            r"data.jsonl: max_length=4 leaves 0 of its 64 examples"),
    # issue 18: accepted without a word, or refused only once the folder had been prepared
    "gradient accumulation beyond an epoch": (
        given(gradient_accumulation_steps=17), ConfigError,
        r"gradient_accumulation_steps=17 is more than the 16 batches of one epoch \(64 examples, "
        r"per_device_train_batch_size=4\)"),
    "a pruning ratio that leaves almost nothing": (given(**{"pat.pruning_ratio": 0.999}), ConfigError,
                                                   r"pruning ratio 0.999 keeps 0.064 of 64 channels"),
    "an unknown logging integration": (given(report_to=["bogus"]), ConfigError,
                                       r"^report_to: unknown logging integration\(s\) \['bogus'\]"),
    "a logging integration not installed": (given(report_to=["wandb"]), ConfigError,
                                            r"^report_to: wandb is not installed here \(pip install wandb\)"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(FAILED_STARTS))
def test_a_failed_start_names_the_problem_and_loses_nothing(case, assets, finished_run, tmp_path):
    breaking, error, message = FAILED_STARTS[case]
    scene = Scene(assets, tmp_path / "scratch", finished_run)
    scene.scratch.mkdir()
    runs = tmp_path / "runs"
    out = shutil.copytree(finished_run, runs / "run")
    before = folder_hashes(out)
    with pytest.raises(error, match=message) as raised:
        train(tiny_settings(assets, out, overwrite_output_dir=True, **breaking(scene)))
    assert "\n" not in str(raised.value)  # one line
    assert folder_hashes(out) == before
    assert sorted(p.name for p in runs.iterdir()) == ["run"]  # no staging folder, no leftovers


def test_after_a_failed_start_the_corrected_command_runs(assets, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ConfigError):
        train(tiny_settings(assets, out, **{"pat.target_width": 50}))
    assert not out.exists()
    assert train(tiny_settings(assets, out, max_steps=2, **{"pat.target_width": 48})).summary["steps"] == 2


# ------------------------------------------------------------------------------- conversions that work
@pytest.mark.parametrize(
    ("override", "field", "value"),
    [
        ("learning_rate=1e-4", "learning_rate", 1e-4),  # YAML 1.1: the string "1e-4"
        ("learning_rate=5e-5", "learning_rate", 5e-5),
        ("warmup_steps=1e1", "warmup_steps", 10),
        ("max_steps=20.0", "max_steps", 20),
        ("num_train_epochs=2", "num_train_epochs", 2.0),
        ("save_total_limit=null", "save_total_limit", None),
        ("report_to=tensorboard", "report_to", ["tensorboard"]),
        ("use_dora=yes", "use_dora", True),
        ("output_dir=2024", "output_dir", "2024"),
    ],
)
def test_override_values_are_converted_to_the_declared_types(override, field, value):
    got = getattr(load_train_config("tiny", [override]), field)
    assert got == value and type(got) is type(value)


def test_pat_section_values_are_converted_too():
    cfg = load_train_config("tiny", ["pat.hio_rank=4.0", "pat.pruning_ratio=3e-1", "pat.identity_loss=off"])
    assert cfg.pat["hio_rank"] == 4 and type(cfg.pat["hio_rank"]) is int
    assert cfg.pat["pruning_ratio"] == 0.3 and cfg.pat_config.identity_loss == "off"


def test_keyword_arguments_are_converted_like_overrides():
    cfg = load_train_config("tiny", settings={"learning_rate": "5e-5", "pat": {"hio_rank": "4"}})
    assert cfg.learning_rate == 5e-5 and cfg.pat["hio_rank"] == 4
    assert cfg.pat["pruning_ratio"] == 0.25  # a section given as a mapping updates the recipe's section
    assert TrainConfig(warmup_steps="1e1").warmup_steps == 10


def test_pat_train_takes_python_values(assets, tmp_path):
    with pytest.raises(ConfigError, match=r"^learning_rate='fast': expected a number"):
        pat_train("tiny", learning_rate="fast", output_dir=str(tmp_path / "never"))
    assert not (tmp_path / "never").exists()
    base, data = assets
    result = pat_train(
        None, model=str(base), data=str(data), data_fraction=1.0, output_dir=str(tmp_path / "run"),
        max_steps=2, per_device_train_batch_size=4, learning_rate=5e-5, warmup_steps=0, max_length=32,
        report_to=[], pat={"hio_rank": 4, "milestone_step": 2},
    )  # fmt: skip
    assert result.summary["steps"] == 2
    assert "learning_rate: 5.0e-05" in (tmp_path / "run" / "run_config.yaml").read_text()


def test_a_yaml_recipe_with_1e_notation_loads_as_numbers(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("learning_rate: 1e-4\nwarmup_steps: 1e1\npat:\n  hio_rank: 8\n")
    cfg = load_train_config(recipe)
    assert (cfg.learning_rate, cfg.warmup_steps, cfg.pat["hio_rank"]) == (1e-4, 10, 8)


# ---------------------------------------------------------------------------------------- config files
BAD_RECIPES = {
    "a YAML syntax error": ("learning_rate: 1e-4\npat:\n  hio_rank: [8\nmax_steps: 3\n",
                            r"recipe.yaml, line \d+: invalid YAML"),
    "a list at the top level": ("- learning_rate: 1e-4\n- max_steps: 3\n",
                                r"recipe.yaml: the top level must be a mapping of settings .*not a list"),
    "a scalar at the top level": ("just text\n", r"recipe.yaml: the top level must be a mapping .*not a str"),
    "a wrong value": ("max_steps: many\n", r"^max_steps='many': expected an integer"),
    # issue 18: PyYAML kept the second `pat:` section and dropped the first without a word
    "a key given twice": ("pat:\n  hio_rank: 8\nmax_steps: 3\npat:\n  milestone_step: 2\n",
                          r"recipe.yaml, line 4: invalid YAML: the key 'pat' appears twice \(first on "
                          r"line 1\)"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_RECIPES))
def test_a_bad_recipe_file_gets_one_line_naming_it(case, tmp_path):
    text, message = BAD_RECIPES[case]
    (tmp_path / "recipe.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message) as raised:
        load_train_config(tmp_path / "recipe.yaml")
    assert "\n" not in str(raised.value)


def test_a_folder_or_a_missing_file_as_config_gets_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"is a folder: --config takes a YAML file or one of \[.*'tiny'"):
        load_train_config(tmp_path)
    with pytest.raises(ConfigError, match=r"no config 'no-such-config'.*'tiny'"):
        load_train_config("no-such-config")
    (tmp_path / "latin.yaml").write_bytes(b"model: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin.yaml: not a UTF-8 text file"):
        load_train_config(tmp_path / "latin.yaml")


# ------------------------------------------------------------------------------------------ evaluation
@pytest.mark.parametrize(
    ("given", "message"),
    [
        (lambda run: run.parent / "missing", r"no model folder at .*missing: no such file or folder"),
        (lambda run: run / "adapter",
         r"adapter is a LoRA/PAT adapter, not a whole model: use the run's merged model .*run/merged "
         r"\(or the run folder .*run\)"),
        (lambda run: run / "log_history.json", r"log_history.json is a file"),
    ],
)  # fmt: skip
def test_evaluation_refuses_what_is_not_a_model_in_one_line(given, message, finished_run, tmp_path):
    with pytest.raises(CheckpointError, match=message):
        evaluate(str(given(finished_run)), tasks="toy", toy_dir=TOY_FIXTURES, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("limit", [0, -3, 0.0])
def test_evaluation_refuses_a_limit_that_is_not_positive(limit, finished_run):
    with pytest.raises(ConfigError, match=rf"limit={limit}: give a number of documents per task"):
        evaluate(str(finished_run / "merged"), tasks="toy", toy_dir=TOY_FIXTURES, limit=limit)


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("pat_arc_chalenge", "pat_arc_challenge"),  # this project's tasks only: fast
        pytest.param("arc_chalenge", "arc_challenge", marks=pytest.mark.slow),  # indexes all of lm-eval's
    ],
)
def test_evaluation_of_an_unknown_task_lists_the_valid_names(typo, meant, finished_run):
    message = (
        rf"unknown evaluation task '{typo}': did you mean {meant}.*"
        r"give toy, paper14, one of the paper's tasks \(ARC-C, ARC-E"
    )
    with pytest.raises(ConfigError, match=message):
        evaluate(str(finished_run / "merged"), tasks=typo, limit=2)


def test_a_run_folder_is_evaluated_through_its_merged_model(finished_run, tmp_path, capsys):
    assert check_model_folder(finished_run, accept_run_folder=True) == finished_run / "merged"
    results = evaluate(str(finished_run), tasks="toy", toy_dir=TOY_FIXTURES, limit=2, batch_size=2)
    assert results["model"] == str(finished_run / "merged")
    assert "the merged model of the run folder" in capsys.readouterr().out
    families = list(TOY_FIXTURES.glob("eval_*.jsonl"))
    assert results["n_tasks"] == len(families) and all(t["n"] == 2 for t in results["tasks"].values())
