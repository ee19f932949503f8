"""The toy world: deterministic, committed files up to date, and the separations of docs/method.md §10 —
retention asks about people tuning never mentions, skills are asked on words nothing else ever used."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from pat_lite.data import toyskills, toyworld
from pat_lite.data.prompts import lettered_question
from pat_lite.data.toyworld import EVAL_SPLITS, FACT_FAMILIES, FAMILIES, LETTERS, SKILL_FAMILIES

WORD = re.compile(r"[A-Za-z]+")


@pytest.fixture(scope="module")
def world() -> toyworld.World:
    return toyworld.build_world()


@pytest.fixture(scope="module")
def items(world) -> dict[str, dict[str, list[dict]]]:
    return {split: toyworld.eval_items(world, split) for split in EVAL_SPLITS}


def _words(text: str) -> set[str]:
    return {w.lower() for w in WORD.findall(text)}


def test_same_seed_same_world_other_seed_differs():
    a, b = toyworld.build_world(7), toyworld.build_world(7)
    assert a == b
    assert toyworld.instruction_records(a) == toyworld.instruction_records(b)
    assert toyworld.eval_items(a, "validation") == toyworld.eval_items(b, "validation")
    assert toyworld.pretraining_corpus(a, epochs=2) == toyworld.pretraining_corpus(b, epochs=2)
    c = toyworld.build_world(8)
    assert c.people != a.people and c.pools != a.pools


def test_generation_leaves_global_random_state_alone():
    random.seed(3)
    expected = random.random()
    random.seed(3)
    world = toyworld.build_world()
    toyworld.pretraining_corpus(world)
    toyworld.instruction_records(world)
    toyworld.eval_items(world, "test")
    assert random.random() == expected


def test_committed_files_equal_regenerated(tmp_path):
    written = toyworld.write_toy_data(tmp_path)
    committed = toyworld.toy_data_dir()
    names = sorted(p.name for p in written)
    assert names == sorted(["instructions.jsonl"] + [f"eval_{f}.jsonl" for f in FAMILIES])
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    for name in names:
        assert (committed / name).read_bytes() == (tmp_path / name).read_bytes(), (
            f"data/toy/{name} is stale: run `python -m pat_lite.data.toyworld`"
        )
    assert (committed / "README.md").is_file()


def test_people_unique_and_splits_disjoint(world):
    names = [p.name for p in world.people]
    assert len(names) == len(set(names)) == toyworld.DEFAULT_N_PEOPLE
    groups = {s: {p.name for p in world.split(s)} for s in ("tune", "validation", "test")}
    assert len(groups["validation"]) == len(groups["test"]) == toyworld.DEFAULT_EVAL_PEOPLE
    assert len(groups["tune"]) == toyworld.DEFAULT_N_PEOPLE - 2 * toyworld.DEFAULT_EVAL_PEOPLE
    assert sum(len(g) for g in groups.values()) == len(set().union(*groups.values())) == len(names)
    for p in world.people:
        assert set(p.facts) == set(FACT_FAMILIES)
        assert all(p.facts[f] in world.vocab[f] for f in FACT_FAMILIES)
    with pytest.raises(ValueError, match="unknown split 'heldout'"):
        world.split("heldout")


def test_word_pools_are_disjoint_from_each_other_names_and_template_words(world):
    pools = world.pools
    assert {k: len(v) for k, v in pools.items()} == toyworld.POOL_SIZES
    everything = [w for pool in pools.values() for w in pool]
    assert len(everything) == len(set(everything))
    name_parts = {part.lower() for p in world.people for part in p.name.split()}
    assert not name_parts & set(everything)
    templates = _words(toyskills.SKILL_TEMPLATE_TEXT)
    assert not templates & set(everything)


SKILL_MARKS = {"add": " In all, ", "subtract": " gave ", "weekday": " came back ", "month": " moved to "}


def _kind(text: str) -> str:
    return next((family for family, mark in SKILL_MARKS.items() if mark in text), "fact")


def test_corpus_covers_everyone_the_clozes_and_every_skill(world):
    docs = toyworld.pretraining_documents(world, skill_docs_per_family=50)
    text = "\n".join(t for t, _ in docs)
    for p in world.people:
        assert p.name in text
    sentences = {t for t, _ in docs}
    for item in toyworld.eval_items(world, "test")["city"]:
        assert f"{item['context']} {item['choices'][item['answer']]}." in sentences
    # per person: 3 fact families x 4 paraphrases + 1 biography
    assert Counter(_kind(t) for t, _ in docs) == {
        "fact": (3 * 4 + 1) * len(world.people),
        **dict.fromkeys(SKILL_FAMILIES, 50),
    }
    answers = set(toyskills.NUMBER_WORDS) | set(toyskills.WEEKDAYS) | set(toyskills.MONTHS)
    for t, spans in docs:  # a fact is trained on all of its text, a skill story on its answer only
        if _kind(t) == "fact":
            assert spans is None
        else:
            ((start, end),) = spans
            answer = t[start:end]
            assert answer in answers, t
            assert t[start - 1] == " " and t.endswith(".") and t[end] in " ."


def test_skill_words_of_each_stage_come_from_its_own_pool(world, items):
    pool_of = {w: name for name, pool in world.pools.items() for w in pool}

    def pools_used(texts):
        return {pool_of[w] for t in texts for w in _words(t) if w in pool_of}

    corpus = toyworld.pretraining_corpus(world, skill_docs_per_family=100)
    records = toyworld.instruction_records(world)
    assert pools_used(corpus) == {"pretrain"}
    assert pools_used(r["instruction"] + " " + r["response"] for r in records) == {"tune"}
    for split in EVAL_SPLITS:
        texts = [it["context"] + " " + it["question"] for fam in SKILL_FAMILIES for it in items[split][fam]]
        assert pools_used(texts) == {split}


def test_no_evaluation_person_in_instructions(world):
    held = [p.name for s in EVAL_SPLITS for p in world.split(s)]
    records = toyworld.load_toy_instructions()
    assert records == toyworld.instruction_records(world)
    blob = "\n".join(r["instruction"] + "\n" + r["response"] for r in records)
    assert not [n for n in held if n in blob]


def test_instruction_records_shape(world):
    records = toyworld.instruction_records(world)
    n_facts = 2 * len(FACT_FAMILIES) * len(world.split("tune"))
    n_skills = 2 * len(SKILL_FAMILIES) * toyworld.DEFAULT_SKILL_TUNE_ITEMS
    assert len(records) == n_facts + n_skills
    letters = [r["response"] for r in records if r["instruction"].endswith("Answer with the letter.")]
    assert len(letters) == len(records) // 2
    assert max(Counter(letters).values()) - min(Counter(letters).values()) <= len(FAMILIES)
    assert set(letters) == set(LETTERS)
    for r in records:
        assert set(r) == {"instruction", "response"}
        assert r["instruction"] and r["response"]


@pytest.mark.parametrize("split", EVAL_SPLITS)
@pytest.mark.parametrize("family", FAMILIES)
def test_committed_eval_items_valid_and_balanced(world, items, family, split):
    got = toyworld.load_toy_eval(family, split=split)
    assert got == items[split][family]
    expected_n = (
        toyworld.DEFAULT_EVAL_PEOPLE if family in FACT_FAMILIES else toyworld.DEFAULT_SKILL_EVAL_ITEMS
    )
    assert len(got) == expected_n
    counts = Counter(it["answer"] for it in got)
    assert max(counts.values()) - min(counts.values()) <= 1  # balanced answer positions
    assert len({it["id"] for it in got}) == len(got)
    for it in got:
        assert set(it) == {"id", "axis", "family", "split", "context", "question", "choices", "answer"}
        assert (it["family"], it["split"], it["axis"]) == (family, split, toyworld.FAMILY_AXIS[family])
        assert len(it["choices"]) == 4 and len(set(it["choices"])) == 4
        assert all(c == c.strip() and c for c in it["choices"])
        assert not it["context"].endswith(" ")


@pytest.mark.parametrize("family", FACT_FAMILIES)
def test_retention_items_ask_the_split_people_their_facts(world, items, family):
    for split in EVAL_SPLITS:
        people = {p.name: p for p in world.split(split)}
        for it in items[split][family]:
            (name,) = [n for n in people if it["context"].startswith(n) or f" {n} " in f" {it['context']} "]
            assert it["choices"][it["answer"]] == people[name].facts[family]
            assert set(it["choices"]) <= set(world.vocab[family])


def _number(word: str) -> int:
    return toyskills.NUMBER_WORDS.index(word) + 1


def test_skill_items_are_answered_by_their_inputs(items):
    """Each skill's right choice follows from the story in its context and the family's rule, and the
    distractors are plausible (nearby numbers, other days, other orders of the same words)."""
    number = r"(\w+) (?:\w+?)s?"
    for it in items["test"]["add"]:
        a, b = re.match(rf"\w+ has {number} and {number}\. In all, \w+ has$", it["context"]).groups()
        assert _number(it["choices"][it["answer"]]) == _number(a) + _number(b)
        assert all(abs(_number(c) - _number(a) - _number(b)) <= 3 for c in it["choices"])
    for it in items["test"]["subtract"]:
        had, gave = re.match(rf"\w+ had {number} and gave (\w+) away\. Now \w+ has$", it["context"]).groups()
        assert _number(it["choices"][it["answer"]]) == _number(had) - _number(gave)
    for it in items["test"]["weekday"]:
        start, days = re.match(
            r"\w+ left on a (\w+) and came back (\w+) days? later, on a$", it["context"]
        ).groups()
        week = toyskills.WEEKDAYS
        assert it["choices"][it["answer"]] == week[(week.index(start) + _number(days)) % 7]
        assert start not in it["choices"] and set(it["choices"]) <= set(week)
    for it in items["test"]["month"]:
        start, months = re.match(
            r"\w+ moved to \w+ in (\w+) and left (\w+) months? later, in$", it["context"]
        ).groups()
        year = toyskills.MONTHS
        assert it["choices"][it["answer"]] == year[(year.index(start) + _number(months)) % 12]
        assert start not in it["choices"] and set(it["choices"]) <= set(year)


def test_skill_instructions_ask_the_same_rules_on_other_stories(world):
    """The tuning data exercise each skill (open answer and lettered) on names of the tune pool only."""
    records = toyworld.instruction_records(world)
    asks = {
        "add": "How many pets does", "subtract": "does {} have now?", "weekday": "On which day did",
        "month": "In which month did",
    }  # fmt: skip
    for family, cue in asks.items():
        open_records = [
            r for r in records if cue.split("{}")[-1] in r["instruction"] and "\nA. " not in r["instruction"]
        ]
        assert len(open_records) == toyworld.DEFAULT_SKILL_TUNE_ITEMS, family
    assert any(r["response"].startswith("In all, ") for r in records)


def test_validation_and_test_are_disjoint(items):
    for fam in FAMILIES:
        contexts = [{it["context"] for it in items[split][fam]} for split in EVAL_SPLITS]
        assert not contexts[0] & contexts[1], fam


def test_load_toy_eval_by_split_axis_and_errors():
    test_items = toyworld.load_toy_eval()
    assert {it["family"] for it in test_items} == set(FAMILIES)
    assert {it["split"] for it in test_items} == {"test"}
    skill = toyworld.load_toy_eval(axis="skill", split="validation")
    assert {it["family"] for it in skill} == set(SKILL_FAMILIES)
    assert {it["split"] for it in skill} == {"validation"}
    with pytest.raises(ValueError, match="unknown toy family"):
        toyworld.load_toy_eval("weather")
    with pytest.raises(ValueError, match="unknown evaluation split 'train'"):
        toyworld.load_toy_eval(split="train")
    with pytest.raises(ValueError, match="unknown toy axis"):
        toyworld.load_toy_eval(axis="speed")


def test_make_example_refuses_bad_input(world):
    rng, names = random.Random(0), ["kira", "temu"]
    with pytest.raises(ValueError, match="unknown skill family 'juggling'"):
        toyskills.make_example("juggling", rng, names, 0, world.vocab)
    with pytest.raises(ValueError, match="answer position"):
        toyskills.make_example("add", rng, names, 4, world.vocab)


def test_mc_question_format():
    q = lettered_question("Where does X live?", ["a", "b", "c", "d"])
    assert q == "Where does X live?\nA. a\nB. b\nC. c\nD. d\nAnswer with the letter."
    assert re.search(r"^D\. d$", q, re.M)
