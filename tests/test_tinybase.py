"""The tiny base: quality gates of the build report, reload via Auto classes, GQA shape, atomic cache."""

from __future__ import annotations

import json

import pytest
import torch

from pat_lite.data import toyworld
from pat_lite.evaluation.mc import chance_accuracy, toy_scores
from pat_lite.models import tinybase


@pytest.fixture(scope="module")
def report(tiny_base_path) -> dict:
    return tinybase.read_build_report(tiny_base_path)


def test_recipe_gives_valid_cut_width_and_gqa():
    r = tinybase.TinyBaseRecipe()
    assert r.cut_hidden_size == 96
    assert r.cut_hidden_size % r.num_attention_heads == 0
    assert r.num_attention_heads % r.num_key_value_heads == 0
    assert r.num_key_value_heads < r.num_attention_heads


def test_cache_key_follows_recipe(tmp_path):
    a = tinybase.tiny_base_dir(tmp_path)
    b = tinybase.tiny_base_dir(tmp_path, tinybase.TinyBaseRecipe(epochs=1))
    assert a.parent == b.parent == tmp_path and a != b
    assert tinybase.TinyBaseRecipe().key() == tinybase.TinyBaseRecipe().key()


def test_cache_root_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("PAT_LITE_CACHE", str(tmp_path))
    assert tinybase.tiny_base_dir().parent == tmp_path


def test_invalid_cut_width_is_refused(tmp_path):
    with pytest.raises(ValueError, match="multiple"):
        tinybase.build_tiny_base(
            tmp_path, recipe=tinybase.TinyBaseRecipe(num_attention_heads=8, head_dim=16, cut_ratio=0.3)
        )


def test_report_gates(report):
    r = tinybase.TinyBaseRecipe()
    assert report["gates_passed"] is True and tinybase.check_gates(report, r) == []
    assert report["chance"] == pytest.approx(25.0)
    for split in toyworld.EVAL_SPLITS:
        base, cut = report["base"][split], report["cut"][split]
        assert base["retention"] >= r.min_retention and base["skill"] >= r.min_skill
        assert set(base["per_family"]) == set(toyworld.FAMILIES)
        assert min(base["per_family"].values()) >= r.min_family
        assert base["retention"] - cut["retention"] >= r.min_cut_drop
        assert base["skill"] - cut["skill"] >= r.min_cut_drop
        assert base["average"] == pytest.approx((base["retention"] + base["skill"]) / 2)
    assert len(report["cut_channels"]) == 32
    assert report["build_seconds"] > 0 and report["build_cpu_seconds"] > 0


def test_check_gates_names_every_failed_gate_with_its_numbers():
    r = tinybase.TinyBaseRecipe()
    good = {"retention": 99.0, "skill": 95.0, "average": 97.0, "per_family": {"city": 99.0, "count": 90.0}}
    cut = {"retention": 70.0, "skill": 60.0, "average": 65.0, "per_family": {}}
    report = {"base": {"validation": good, "test": good}, "cut": {"validation": cut, "test": cut}}
    assert tinybase.check_gates(report, r) == []
    weak = {**good, "skill": 80.0, "per_family": {"city": 99.0, "count": 70.0}}
    mild_cut = {**cut, "retention": 90.0}
    report = {"base": {"validation": good, "test": weak}, "cut": {"validation": mild_cut, "test": cut}}
    failed = tinybase.check_gates(report, r)
    assert failed == [
        "validation: a 25% norm cut only drops retention by 9.0 points (99.0 -> 90.0 %) < 15.0",
        "test: base skill 80.0 % < 85.0 %",
        "test: base accuracy on count = 70.0 % < 75.0 %",
    ]


def test_reload_with_auto_classes(tiny_base_path, report):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_base_path)
    tok = AutoTokenizer.from_pretrained(tiny_base_path)
    cfg = model.config
    assert cfg.model_type == "llama" and cfg.hidden_size == 128 and cfg.num_hidden_layers == 4
    assert cfg.num_key_value_heads == 2 < cfg.num_attention_heads == 4
    assert cfg.tie_word_embeddings is False
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    ids = tok("Brabam Dagi lives in")["input_ids"]
    assert ids[0] == tok.bos_token_id
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == ("<s>", "</s>", "<pad>", "<unk>")
    text = "### Instruction:\nWhere?\nA. x\nB. y\n\n### Response:\nB 42"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    # the saved model scores the committed test items as the build measured them (a subset, to stay fast)
    items = [it for fam in toyworld.FAMILIES for it in toyworld.load_toy_eval(fam)[:25]]
    scores = toy_scores(model, tok, items=items, batch_size=64)
    assert scores["n"] == 25 * len(toyworld.FAMILIES) and set(scores["per_family"]) == set(toyworld.FAMILIES)
    for axis in toyworld.AXES:
        assert scores[axis] > 100 * chance_accuracy(items) + 50
        assert abs(scores[axis] - report["base"]["test"][axis]) <= 10


def test_the_committed_items_are_the_build_worlds_items(report):
    world = toyworld.build_world(report["recipe"]["world_seed"], report["recipe"]["n_people"])
    for split in toyworld.EVAL_SPLITS:
        generated = [it for items in toyworld.eval_items(world, split).values() for it in items]
        assert generated == toyworld.load_toy_eval(split=split)
        assert report["base"][split]["n"] == len(generated)


def test_load_tiny_base(tiny_base_path):
    model, tok = tinybase.load_tiny_base(tiny_base_path.parent)
    assert not model.training
    assert tok.pad_token_id is not None


def test_crude_cut_zeroes_the_residual_channels(tiny_base_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_base_path)
    cut = tinybase.crude_hidden_cut(model, 0.25)
    assert len(cut) == 32
    seen = {}

    def keep(k):
        return lambda module, args, out: seen.__setitem__(k, out[0] if isinstance(out, tuple) else out)

    hooks = [layer.register_forward_hook(keep(k)) for k, layer in enumerate(model.model.layers)]
    with torch.no_grad():
        model(input_ids=torch.tensor([[1, 5, 6, 7]]))
    for h in hooks:
        h.remove()
    for hidden in seen.values():
        assert hidden[..., cut].abs().max().item() == 0.0


def test_half_written_cache_is_rebuilt(tmp_path, monkeypatch):
    """A folder without build_report.json (a crash) is not a finished build: it is replaced."""
    recipe = tinybase.TinyBaseRecipe(
        n_people=24,
        skill_docs_per_family=8,
        epochs=1,
        min_retention=0,
        min_skill=0,
        min_family=0,
        min_cut_drop=-100,
    )
    target = tinybase.tiny_base_dir(tmp_path, recipe)
    target.mkdir(parents=True)
    (target / "config.json").write_text("{half written")
    assert not tinybase.is_built(target)
    built = tinybase.build_tiny_base(tmp_path, progress=False, recipe=recipe)
    assert built == target and tinybase.is_built(target)
    assert json.loads((target / "config.json").read_text())["model_type"] == "llama"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left
    # a finished build is reused, not rebuilt
    mtime = (target / tinybase.REPORT_NAME).stat().st_mtime_ns
    assert tinybase.build_tiny_base(tmp_path, progress=False, recipe=recipe) == target
    assert (target / tinybase.REPORT_NAME).stat().st_mtime_ns == mtime


def test_failed_gate_raises_and_keeps_nothing(tmp_path):
    recipe = tinybase.TinyBaseRecipe(n_people=24, skill_docs_per_family=8, epochs=1, min_retention=101)
    with pytest.raises(tinybase.GateError, match="base retention .* < 101"):
        tinybase.build_tiny_base(tmp_path, progress=False, recipe=recipe)
    assert not tinybase.tiny_base_dir(tmp_path, recipe).exists()
