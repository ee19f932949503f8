"""The tiny base ships with pat_lite: its files, its gates, how it loads, and how it is rebuilt.

The shipped folder (`data/tiny_base`) was built once by `pat-lite build-tiny-base` with the default recipe;
nothing on a user's path trains it. The builder stays, and a build that misses a gate keeps its files and
says so in one line.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict

import pytest

from pat_lite import cli
from pat_lite.data import toyworld
from pat_lite.evaluation.gates import check_gates
from pat_lite.evaluation.mc import chance_accuracy, toy_scores
from pat_lite.models import tinybase
from pat_lite.models.loading import checkpoint_path
from pat_lite.training.tinybase_build import build_tiny_base, recipe_from_overrides
from pat_lite.utils.errors import CheckpointError, ConfigError, RunFolderError

#: A recipe that builds in seconds (its gates are set so that it passes; only the mechanics are tested).
MICRO = dict(n_people=24, skill_docs_per_family=8, epochs=1, min_retention=0, min_skill=0, min_family=0,
             min_cut_drop=-100)  # fmt: skip


@pytest.fixture
def few_gate_items(monkeypatch):
    """The builds below test the build's mechanics, not its gates' figures: score 10 items per family."""
    from pat_lite.evaluation import gates

    full = gates.toyworld.eval_items

    def first_ten(world, split):
        return {family: items[:10] for family, items in full(world, split).items()}

    monkeypatch.setattr(gates.toyworld, "eval_items", first_ten)


@pytest.fixture(scope="module")
def report(tiny_base_path) -> dict:
    return tinybase.read_build_report(tiny_base_path)


def test_the_shipped_base_is_package_data_and_the_name_tiny_points_at_it(tiny_base_path):
    assert tiny_base_path == tinybase.tiny_base_dir() and tiny_base_path.name == "tiny_base"
    assert checkpoint_path("tiny") == str(tiny_base_path)
    assert tinybase.tiny_base_problem(tiny_base_path) is None
    size = sum(p.stat().st_size for p in tiny_base_path.iterdir())
    assert size < 6_000_000  # 4.7 MB of fp32 weights plus a tokenizer: small enough for git


def test_the_shipped_base_was_built_by_the_default_recipe_and_passed_every_gate(report):
    recipe = tinybase.TinyBaseRecipe()
    assert report["key"] == recipe.key() and report["recipe"] == asdict(recipe)
    assert report["gates_passed"] is True and check_gates(report, recipe) == []
    assert report["chance"] == pytest.approx(25.0)
    for split in toyworld.EVAL_SPLITS:
        base, cut = report["base"][split], report["cut"][split]
        assert base["retention"] >= recipe.min_retention and base["skill"] >= recipe.min_skill
        assert set(base["per_family"]) == set(toyworld.FAMILIES)
        assert min(base["per_family"].values()) >= recipe.min_family
        assert base["retention"] - cut["retention"] >= recipe.min_cut_drop
        assert base["skill"] - cut["skill"] >= recipe.min_cut_drop
    assert len(report["cut_channels"]) == 32 and report["n_parameters"] == 1_180_800


def test_recipe_gives_valid_cut_width_and_gqa():
    r = tinybase.TinyBaseRecipe()
    assert r.cut_hidden_size == 96 and r.cut_hidden_size % r.num_attention_heads == 0
    assert r.num_attention_heads % r.num_key_value_heads == 0 < r.num_key_value_heads < r.num_attention_heads
    assert tinybase.TinyBaseRecipe().key() == r.key() != tinybase.TinyBaseRecipe(epochs=1).key()


@pytest.mark.committed_numbers
def test_the_shipped_base_scores_here_as_the_build_measured_it(tiny_base_path, report):
    """Loaded with plain Auto classes, on this machine's CPU: the test items score as in the report.

    Tolerance 2 points per axis: the build report's figures were measured on the build machine; another
    CPU's kernels change log-likelihoods by ~1e-6 and could flip an item whose two best choices nearly tie.
    Measured: with AVX-512 and with generic kernels (ATEN_CPU_CAPABILITY=default) every per-family score
    of both splits equals the report's (0 points of spread); 2 points are 6 retention or 16 skill items."""
    model, tok = tinybase.load_tiny_base()
    cfg = model.config
    assert not model.training and cfg.model_type == "llama" and cfg.hidden_size == 128
    assert cfg.num_key_value_heads == 2 < cfg.num_attention_heads == 4 and cfg.tie_word_embeddings is False
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    assert tok("Brabam Dagi lives in")["input_ids"][0] == tok.bos_token_id
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == ("<s>", "</s>", "<pad>", "<unk>")
    text = "### Instruction:\nWhere?\nA. x\nB. y\n\n### Response:\nB 42"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    scores = toy_scores(model, tok, split="test", batch_size=64)
    for axis in toyworld.AXES:
        assert scores[axis] > 100 * chance_accuracy(toyworld.load_toy_eval(split="test")) + 50
        assert scores[axis] == pytest.approx(report["base"]["test"][axis], abs=2.0), axis


def test_the_committed_items_are_the_build_worlds_items(report):
    world = toyworld.build_world(report["recipe"]["world_seed"], report["recipe"]["n_people"])
    for split in toyworld.EVAL_SPLITS:
        generated = [it for items in toyworld.eval_items(world, split).values() for it in items]
        assert generated == toyworld.load_toy_eval(split=split)
        assert report["base"][split]["n"] == len(generated)


@pytest.mark.parametrize("damage", ["truncate", "delete_report", "pointer"])
def test_a_damaged_tiny_base_is_one_line_naming_the_folder(tmp_path, tiny_base_path, damage):
    copy = tmp_path / "tiny_base"
    shutil.copytree(tiny_base_path, copy)
    weights = copy / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:100_000])
    elif damage == "delete_report":
        (copy / tinybase.REPORT_NAME).unlink()
    else:  # what a clone without git-lfs would hold
        weights.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 4727328\n")
    with pytest.raises(CheckpointError) as error:
        tinybase.load_tiny_base(copy)
    assert str(copy) in str(error.value) and "\n" not in str(error.value)


def test_check_gates_names_every_failed_gate_with_its_numbers():
    r = tinybase.TinyBaseRecipe()
    good = {"retention": 99.0, "skill": 95.0, "average": 97.0, "per_family": {"city": 99.0, "count": 90.0}}
    cut = {"retention": 70.0, "skill": 60.0, "average": 65.0, "per_family": {}}
    report = {"base": {"validation": good, "test": good}, "cut": {"validation": cut, "test": cut}}
    assert check_gates(report, r) == []
    weak = {**good, "skill": 80.0, "per_family": {"city": 99.0, "count": 70.0}}
    mild_cut = {**cut, "retention": 90.0}
    report = {"base": {"validation": good, "test": weak}, "cut": {"validation": mild_cut, "test": cut}}
    assert check_gates(report, r) == [
        "validation: a 25% norm cut only drops retention by 9.0 points (99.0 -> 90.0 %) < 15.0",
        "test: base skill 80.0 % < 85.0 %",
        "test: base accuracy on count = 70.0 % < 75.0 %",
    ]


def test_recipe_overrides_are_typed_and_unknown_fields_are_refused():
    recipe = recipe_from_overrides(["epochs=2", "lr=1e-3", "min_skill=80"])
    assert (recipe.epochs, recipe.lr, recipe.min_skill) == (2, 1e-3, 80.0)
    with pytest.raises(ConfigError, match="epoch"):
        recipe_from_overrides(["epoch=2"])
    with pytest.raises(ConfigError, match="expected int"):
        recipe_from_overrides(["epochs=two"])


def test_an_invalid_cut_width_is_refused_before_any_work(tmp_path):
    recipe = tinybase.TinyBaseRecipe(num_attention_heads=8, head_dim=16, cut_ratio=0.3)
    with pytest.raises(ConfigError, match="multiple"):
        build_tiny_base(tmp_path / "out", recipe=recipe)
    assert not (tmp_path / "out").exists()


def test_a_build_writes_a_loadable_folder_atomically_and_refuses_to_overwrite(tmp_path, few_gate_items):
    out = tmp_path / "tb"
    assert build_tiny_base(out, tinybase.TinyBaseRecipe(**MICRO), progress=False) == out
    assert tinybase.tiny_base_problem(out) is None and tinybase.read_build_report(out)["gates_passed"]
    model, _ = tinybase.load_tiny_base(out)
    assert model.config.hidden_size == 128
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tb"]  # no temporary sibling left
    with pytest.raises(RunFolderError, match="not empty"):
        build_tiny_base(out, tinybase.TinyBaseRecipe(**MICRO), progress=False)


def test_a_build_that_misses_a_gate_keeps_its_files_and_says_so_in_one_line(tmp_path, capsys, few_gate_items):
    out = tmp_path / "tb"
    status = cli.main(["build-tiny-base", "--out", str(out), *(f"{k}={v}" for k, v in MICRO.items()),
                       "min_retention=101"])  # fmt: skip
    err = capsys.readouterr().err  # the progress bar, then the error
    assert status == cli.USER_ERROR_STATUS and "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("pat-lite: error:")]
    assert "missed 2 quality gate(s)" in line and "base retention" in line and str(out) in line
    report = tinybase.read_build_report(out)
    assert report["gates_passed"] is False and len(report["failed_gates"]) == 2
    assert tinybase.tiny_base_problem(out) is None  # kept for inspection, complete
