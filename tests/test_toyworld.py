"""The toy world: deterministic, committed files up to date, and the tune/held-out separation of §10."""

from __future__ import annotations

import re

import pytest

from pat_lite.data import toyworld
from pat_lite.data.prompts import lettered_question
from pat_lite.data.toyworld import FAMILIES, LETTERS


@pytest.fixture(scope="module")
def world() -> toyworld.World:
    return toyworld.build_world()


def test_same_seed_same_world_other_seed_differs():
    a, b = toyworld.build_world(7), toyworld.build_world(7)
    assert a == b
    assert toyworld.instruction_records(a) == toyworld.instruction_records(b)
    assert toyworld.eval_items(a) == toyworld.eval_items(b)
    assert toyworld.pretraining_corpus(a, epochs=2) == toyworld.pretraining_corpus(b, epochs=2)
    assert toyworld.build_world(8).people != a.people


def test_generation_leaves_global_random_state_alone():
    import random

    random.seed(3)
    expected = random.random()
    random.seed(3)
    toyworld.build_world()
    toyworld.pretraining_corpus(toyworld.build_world())
    assert random.random() == expected


def test_committed_files_equal_regenerated(tmp_path):
    toyworld.write_toy_data(tmp_path)
    committed = toyworld.toy_data_dir()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["README.md", "instructions.jsonl"] + [f"eval_{f}.jsonl" for f in FAMILIES])
    for name in names:
        assert (committed / name).read_bytes() == (tmp_path / name).read_bytes(), (
            f"data/toy/{name} is stale: run `python -m pat_lite.data.toyworld`"
        )


def test_people_unique_and_split_disjoint(world):
    names = [p.name for p in world.people]
    assert len(names) == len(set(names)) == toyworld.DEFAULT_N_PEOPLE
    tune = {p.name for p in world.split("tune")}
    held = {p.name for p in world.split("heldout")}
    assert tune.isdisjoint(held)
    assert tune | held == set(names)
    assert abs(len(tune) - len(held)) <= 1
    for p in world.people:
        assert set(p.facts) == set(FAMILIES)
        assert all(p.facts[f] in world.vocab[f] for f in FAMILIES)


def test_corpus_covers_everyone_and_contains_the_clozes(world):
    corpus = toyworld.pretraining_corpus(world)
    text = "\n".join(corpus)
    for p in world.people:
        assert p.name in text
    sentences = set(corpus)
    for items in toyworld.eval_items(world).values():
        for it in items:
            assert f"{it['context']} {it['choices'][it['answer']]}." in sentences


def test_no_heldout_person_in_instructions(world):
    held = [p.name for p in world.split("heldout")]
    records = toyworld.load_toy_instructions()
    assert records == toyworld.instruction_records(world)
    blob = "\n".join(r["instruction"] + "\n" + r["response"] for r in records)
    leaked = [n for n in held if n in blob]
    assert not leaked


def test_instruction_records_shape(world):
    records = toyworld.instruction_records(world)
    assert len(records) == 2 * len(FAMILIES) * len(world.split("tune"))
    letters = [r["response"] for r in records if r["instruction"].endswith("Answer with the letter.")]
    assert len(letters) == len(records) // 2
    assert set(letters) == set(LETTERS)
    for r in records:
        assert set(r) == {"instruction", "response"}
        assert r["instruction"] and r["response"]


@pytest.mark.parametrize("family", FAMILIES)
def test_eval_items_valid(world, family):
    items = toyworld.load_toy_eval(family)
    assert items == toyworld.eval_items(world)[family]
    held = {p.name: p for p in world.split("heldout")}
    assert len(items) == len(held)
    counts = [0] * len(LETTERS)
    for it in items:
        assert set(it) == {"id", "family", "context", "question", "choices", "answer"}
        assert it["family"] == family
        assert len(it["choices"]) == 4 and len(set(it["choices"])) == 4
        assert 0 <= it["answer"] < 4
        assert all(c == c.strip() and c in world.vocab[family] for c in it["choices"])
        person = next(n for n in held if it["context"].find(n) >= 0)
        assert it["choices"][it["answer"]] == held[person].facts[family]
        assert not it["context"].endswith(" ")
        counts[it["answer"]] += 1
    assert max(counts) - min(counts) <= 1  # balanced answer positions
    assert len({it["id"] for it in items}) == len(items)


def test_load_toy_eval_all_and_unknown():
    items = toyworld.load_toy_eval()
    assert {it["family"] for it in items} == set(FAMILIES)
    with pytest.raises(ValueError, match="unknown toy family"):
        toyworld.load_toy_eval("weather")


def test_mc_question_format():
    q = lettered_question("Where does X live?", ["a", "b", "c", "d"])
    assert q == "Where does X live?\nA. a\nB. b\nC. c\nD. d\nAnswer with the letter."
    assert re.search(r"^D\. d$", q, re.M)
