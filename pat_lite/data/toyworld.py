"""The embedded "toy world": invented people, their facts and in-context skills, generated from a seed.

Why it exists: PAT (docs/method.md) needs a base model that *knows* and *can do* something, a pruning step
that takes part of it away, and instruction tuning. Real checkpoints are too big for a CPU demo and need
downloads, so pat_lite pre-trains a tiny Llama on this world (``pat_lite.models.tinybase``).

It measures two axes (docs/method.md §10):

- **retention** — 400 invented people, each with one value in each of three *fact families* (city, colour,
  pet), split into ``tune`` (200), ``validation`` (100) and ``test`` (100) people. The
  pre-training corpus states the facts of **everyone**; the instruction data ask only about the ``tune``
  people; the evaluation asks about the ``validation`` / ``test`` people. A pruned model can score there
  only by keeping what it learned in pre-training: no tuning can re-teach it.
- **skill** — four *skill families* whose inputs are in the prompt (:mod:`pat_lite.data.toyskills`):
  adding and subtracting counts, week days and months later. Every skill item is drawn
  from one of four disjoint pools of invented words: ``pretrain`` (the corpus), ``tune`` (the instruction
  data), ``validation`` and ``test`` (the evaluation) — the evaluation's words are never seen in
  pre-training or tuning. Tuning exercises the same abilities on other words, so it *can* recover them.

Evaluation items (:func:`eval_items`) carry two views of the same question:

- ``context`` + ``choices`` for log-likelihood scoring: ``context`` is a corpus-style cloze prefix
  ("Alba Korin lives in") and each choice is its continuation **without** a leading space; scorers join
  them with a single space as target delimiter (``context + " " + choice``), exactly as lm-eval does;
- ``question`` (a natural question, with the skill's inputs) for the paper's lettered protocol (§9).

Each item is tagged ``axis`` ("retention" / "skill"), ``family`` and ``split`` ("validation" / "test": the
study selects on validation and reports test). Everything is a pure function of the seed (private
``random.Random`` instances; no global state), and the committed ``data/toy/*.jsonl`` files are regenerated
byte-identically by ``python -m pat_lite.data.toyworld``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pat_lite.data.prompts import lettered_question
from pat_lite.data.toyskills import N_CHOICES, SKILL_FAMILIES, SKILL_TEMPLATE_TEXT, make_example
from pat_lite.resources import data_dir

__all__ = [
    "AXES",
    "EVAL_SPLITS",
    "FACT_FAMILIES",
    "FAMILIES",
    "FAMILY_AXIS",
    "LETTERS",
    "SKILL_FAMILIES",
    "TOYWORLD_VERSION",
    "Person",
    "World",
    "build_world",
    "eval_items",
    "instruction_records",
    "load_toy_eval",
    "load_toy_instructions",
    "pretraining_corpus",
    "pretraining_documents",
    "toy_data_dir",
    "write_toy_data",
]

#: Bump when anything below changes what is generated (the tiny-base cache key includes it).
TOYWORLD_VERSION = "3"
DEFAULT_SEED = 1234
DEFAULT_N_PEOPLE = 400
#: People per evaluation split (a quarter of them each); the rest are ``tune`` people.
DEFAULT_EVAL_PEOPLE = DEFAULT_N_PEOPLE // 4
#: Skill items per family: in each evaluation split, and in the instruction data.
DEFAULT_SKILL_EVAL_ITEMS = 200
DEFAULT_SKILL_TUNE_ITEMS = 300
#: Fresh skill documents per family in every pre-training epoch.
DEFAULT_SKILL_DOCS = 600
#: Sizes of the disjoint word pools skill items draw from.
POOL_SIZES: dict[str, int] = {"pretrain": 2400, "tune": 800, "validation": 400, "test": 400}
LETTERS = ("A", "B", "C", "D")
AXES = ("retention", "skill")
EVAL_SPLITS = ("validation", "test")
PEOPLE_SPLITS = ("tune", *EVAL_SPLITS)

# Value vocabularies, one per fact family. Plain words (and invented city names); every word starts with a
# consonant so "a {pet}" never needs "an".
_VOCAB: dict[str, tuple[str, ...]] = {
    "city": ("Veldra", "Mornhal", "Tessaly", "Quiren", "Dorvik", "Lunmere", "Kastrel", "Bravosa"),
    "colour": ("red", "blue", "green", "yellow", "purple", "brown", "white", "black"),
    "pet": ("cat", "dog", "horse", "goat", "parrot", "rabbit", "turtle", "hamster"),
}
FACT_FAMILIES: tuple[str, ...] = tuple(_VOCAB)
FAMILIES: tuple[str, ...] = FACT_FAMILIES + SKILL_FAMILIES
FAMILY_AXIS: dict[str, str] = {f: "retention" for f in FACT_FAMILIES} | {f: "skill" for f in SKILL_FAMILIES}

# Corpus paraphrases per family; {n} = the person, {v} = the value. The FIRST template of each family is
# the cloze used by the evaluation items (its text up to "{v}" is the ``context``), so it must end in
# " {v}." and appear in the corpus.
_STATEMENTS: dict[str, tuple[str, ...]] = {
    "city": (
        "{n} lives in {v}.",
        "The home town of {n} is {v}.",
        "{n} has a house in {v}.",
        "Where does {n} live? {n} lives in {v}.",
    ),
    "colour": (
        "The favourite colour of {n} is {v}.",
        "{n} likes the colour {v} best.",
        "{n} always wears {v}.",
        "What is the favourite colour of {n}? It is {v}.",
    ),
    "pet": (
        "{n} has a pet {v}.",
        "The pet of {n} is a {v}.",
        "At home {n} feeds a {v}.",
        "What pet does {n} have? {n} has a pet {v}.",
    ),
}

# Natural questions (the lettered protocol) and open answers (instruction data).
_QUESTIONS: dict[str, str] = {
    "city": "Where does {n} live?",
    "colour": "What is the favourite colour of {n}?",
    "pet": "What pet does {n} have?",
}
_ANSWERS: dict[str, str] = {
    "city": "{n} lives in {v}.",
    "colour": "The favourite colour of {n} is {v}.",
    "pet": "{n} has a pet {v}.",
}

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "tr")
_VOWELS = ("a", "e", "i", "o", "u")
_CODAS = ("", "", "n", "l", "r", "s", "m")
#: Words of the templates: an invented word must never be one of them ("dame" or "tusa" could be).
_TEMPLATE_WORDS = frozenset(
    w.strip(".,?:").lower()
    for text in [
        *(t for ts in _STATEMENTS.values() for t in ts),
        *_QUESTIONS.values(),
        SKILL_TEMPLATE_TEXT,
        "Answer with the letter",
    ]
    for w in text.replace("{n}", " ").replace("{v}", " ").split()
)


@dataclass(frozen=True)
class Person:
    """One inhabitant: a unique full name, a split ("tune", "validation" or "test") and one value per fact
    family."""

    name: str
    split: str
    facts: dict[str, str]


@dataclass(frozen=True)
class World:
    """The whole world: its seed, people (in generation order), value vocabularies and the disjoint word
    pools ("pretrain", "tune", "validation", "test") that skill items draw from."""

    seed: int
    people: tuple[Person, ...]
    vocab: dict[str, tuple[str, ...]]
    pools: dict[str, tuple[str, ...]]

    def split(self, name: str) -> list[Person]:
        """The people of one split ("tune", "validation" or "test")."""
        if name not in PEOPLE_SPLITS:
            raise ValueError(f"unknown split {name!r}; known: {list(PEOPLE_SPLITS)}")
        return [p for p in self.people if p.split == name]


def _word(rng: random.Random, syllables: int) -> str:
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)]
    return "".join(parts) + rng.choice(_CODAS)


def build_world(
    seed: int = DEFAULT_SEED, n_people: int = DEFAULT_N_PEOPLE, eval_people: int | None = None
) -> World:
    """Generate the world: ``n_people`` unique invented names with random facts (``eval_people`` each in
    ``validation`` and ``test`` — default a quarter of the people — the rest ``tune``), and the four
    disjoint skill word pools.

    Deterministic: only a private ``random.Random(seed)`` is used. Name parts never collide with value
    words, template words or pool words, so a name token cannot be confused with an answer.
    """
    eval_people = n_people // 4 if eval_people is None else eval_people
    if not 0 < 2 * eval_people < n_people:
        raise ValueError(
            f"need 2 * eval_people < n_people, got eval_people={eval_people}, n_people={n_people}"
        )
    rng = random.Random(seed)
    reserved = {v.lower() for values in _VOCAB.values() for v in values} | _TEMPLATE_WORDS
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n_people:
        first, last = _word(rng, 2), _word(rng, 2)
        full = f"{first.capitalize()} {last.capitalize()}"
        if full in seen or first == last or {first, last} & reserved:
            continue
        seen.add(full)
        names.append(full)
    order = list(range(n_people))
    rng.shuffle(order)
    split_of = {i: "validation" for i in order[:eval_people]} | {
        i: "test" for i in order[eval_people : 2 * eval_people]
    }
    people = tuple(
        Person(
            name=name,
            split=split_of.get(i, "tune"),
            facts={fam: rng.choice(values) for fam, values in _VOCAB.items()},
        )
        for i, name in enumerate(names)
    )
    taken = reserved | {part.lower() for name in names for part in name.split()}
    stems: list[str] = []
    while len(stems) < sum(POOL_SIZES.values()):
        stem = _word(rng, 2)
        if stem not in taken:
            taken.add(stem)
            stems.append(stem)
    pools, start = {}, 0
    for pool, size in POOL_SIZES.items():
        pools[pool] = tuple(stems[start : start + size])
        start += size
    return World(seed=seed, people=people, vocab=dict(_VOCAB), pools=pools)


def _statements(person: Person) -> Iterator[str]:
    for fam in FACT_FAMILIES:
        for template in _STATEMENTS[fam]:
            yield template.format(n=person.name, v=person.facts[fam])


#: A pre-training document: its text and the character spans that carry the loss (None: all of it).
Document = tuple[str, list[tuple[int, int]] | None]


def pretraining_documents(
    world: World, epochs: int = 1, seed: int = 0, skill_docs_per_family: int = DEFAULT_SKILL_DOCS
) -> list[Document]:
    """Pre-training documents: the facts of everyone, and skill documents, ``epochs`` times.

    Each epoch holds every paraphrase of every fact as a one-sentence document (the form the cloze
    evaluation uses, right after BOS), a short "biography" per person (all its facts in random order and
    random paraphrases), and ``skill_docs_per_family`` fresh skill documents per skill family drawn from
    the ``pretrain`` word pool, each asking several queries about its inputs. A fact document is trained
    on all of its text; a skill document only on its answers (its inputs are random words by
    construction: predicting them teaches nothing and, measured, costs the facts). Documents are shuffled
    per epoch with ``random.Random(seed)``.
    """
    rng = random.Random(seed)
    docs: list[Document] = []
    for _ in range(epochs):
        epoch: list[Document] = [(s, None) for p in world.people for s in _statements(p)]
        for p in world.people:
            fams = list(FACT_FAMILIES)
            rng.shuffle(fams)
            bio = " ".join(rng.choice(_STATEMENTS[f]).format(n=p.name, v=p.facts[f]) for f in fams)
            epoch.append((bio, None))
        for fam in SKILL_FAMILIES:
            for _ in range(skill_docs_per_family):
                example = make_example(
                    fam, rng, world.pools["pretrain"], rng.randrange(N_CHOICES), world.vocab
                )
                epoch.append(example.document())
        rng.shuffle(epoch)
        docs.extend(epoch)
    return docs


def pretraining_corpus(
    world: World, epochs: int = 1, seed: int = 0, skill_docs_per_family: int = DEFAULT_SKILL_DOCS
) -> list[str]:
    """The texts of :func:`pretraining_documents` (same arguments, same order)."""
    return [text for text, _ in pretraining_documents(world, epochs, seed, skill_docs_per_family)]


def _mc(rng: random.Random, world: World, fam: str, person: Person, answer: int) -> list[str]:
    """Four distinct choices from the family's vocabulary with the true value at index ``answer``."""
    truth = person.facts[fam]
    distractors = rng.sample([v for v in world.vocab[fam] if v != truth], len(LETTERS) - 1)
    return distractors[:answer] + [truth] + distractors[answer:]


def _balanced_positions(rng: random.Random, n: int) -> list[int]:
    positions = [i % len(LETTERS) for i in range(n)]
    rng.shuffle(positions)
    return positions


def instruction_records(
    world: World, seed: int = 1, skill_items_per_family: int = DEFAULT_SKILL_TUNE_ITEMS
) -> list[dict[str, str]]:
    """Instruction-tuning records ``{"instruction", "response"}``: facts of the ``tune`` people and skills
    on the ``tune`` word pool.

    Per person and fact family, and per skill item, one open question ("Where does X live?" → "X lives in
    Veldra.") and one lettered multiple-choice question (→ "B"), so a tuned model learns to answer with a
    letter (§9's protocol).
    """
    rng = random.Random(seed)
    records: list[dict[str, str]] = []
    people = world.split("tune")
    for fam in FACT_FAMILIES:
        positions = _balanced_positions(rng, len(people))
        for person, pos in zip(people, positions, strict=True):
            question = _QUESTIONS[fam].format(n=person.name)
            answer = _ANSWERS[fam].format(n=person.name, v=person.facts[fam])
            records.append({"instruction": question, "response": answer})
            choices = _mc(rng, world, fam, person, pos)
            records.append({"instruction": lettered_question(question, choices), "response": LETTERS[pos]})
    for fam in SKILL_FAMILIES:
        for pos in _balanced_positions(rng, skill_items_per_family):
            ex = make_example(fam, rng, world.pools["tune"], pos, world.vocab)
            records.append({"instruction": ex.question, "response": ex.response})
            records.append(
                {"instruction": lettered_question(ex.question, ex.choices), "response": LETTERS[pos]}
            )
    rng.shuffle(records)
    return records


def eval_items(
    world: World, split: str = "test", seed: int = 2, skill_items_per_family: int = DEFAULT_SKILL_EVAL_ITEMS
) -> dict[str, list[dict]]:
    """Multiple-choice items of one evaluation ``split`` ("validation" or "test"), one list per family.

    Item: ``{"id", "axis", "family", "split", "context", "question", "choices" (4 str), "answer" (int)}``.
    Retention items ask about the split's people (``context`` = the family's first corpus statement up to
    the value; distractors are other values of the family); skill items are drawn from the split's word
    pool. A choice is the continuation without the leading space (score ``context + " " + choice``). Answer
    positions are balanced (each letter ~25 %) and deterministic.
    """
    if split not in EVAL_SPLITS:
        raise ValueError(f"unknown evaluation split {split!r}; known: {list(EVAL_SPLITS)}")
    out: dict[str, list[dict]] = {}
    people = world.split(split)
    for fam in FAMILIES:
        rng = random.Random(f"{seed}:{split}:{fam}")
        items = []
        if fam in FACT_FAMILIES:
            cloze = _STATEMENTS[fam][0]
            for person, pos in zip(people, _balanced_positions(rng, len(people)), strict=True):
                view = (
                    cloze[: -len(" {v}.")].format(n=person.name),
                    _QUESTIONS[fam].format(n=person.name),
                    _mc(rng, world, fam, person, pos),
                )
                items.append((*view, pos))
        else:
            for pos in _balanced_positions(rng, skill_items_per_family):
                ex = make_example(fam, rng, world.pools[split], pos, world.vocab)
                items.append((ex.context, ex.question, list(ex.choices), pos))
        out[fam] = [
            {
                "id": f"{fam}-{split}-{k:03d}",
                "axis": FAMILY_AXIS[fam],
                "family": fam,
                "split": split,
                "context": context,
                "question": question,
                "choices": choices,
                "answer": answer,
            }
            for k, (context, question, choices, answer) in enumerate(items)
        ]
    return out


def toy_data_dir() -> Path:
    """The committed ``data/toy`` directory (shipped with the package, see ``pat_lite.resources``)."""
    return data_dir() / "toy"


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    text = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows)
    path.write_text(text, encoding="utf-8", newline="\n")


def write_toy_data(out_dir: str | Path | None = None, seed: int = DEFAULT_SEED) -> list[Path]:
    """Write ``instructions.jsonl`` and ``eval_<family>.jsonl`` (validation items, then test items) with
    sorted keys and LF endings; return the paths. (``data/toy/README.md`` is written by hand.)"""
    out = Path(out_dir) if out_dir is not None else toy_data_dir()
    out.mkdir(parents=True, exist_ok=True)
    world = build_world(seed)
    paths = [out / "instructions.jsonl"]
    _write_jsonl(paths[0], instruction_records(world))
    by_split = {split: eval_items(world, split) for split in EVAL_SPLITS}
    for fam in FAMILIES:
        paths.append(out / f"eval_{fam}.jsonl")
        _write_jsonl(paths[-1], [item for split in EVAL_SPLITS for item in by_split[split][fam]])
    return paths


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_toy_instructions(data_dir: str | Path | None = None) -> list[dict[str, str]]:
    """The committed instruction records (``data/toy/instructions.jsonl``)."""
    return _read_jsonl(Path(data_dir or toy_data_dir()) / "instructions.jsonl")


def load_toy_eval(
    family: str | None = None,
    split: str = "test",
    data_dir: str | Path | None = None,
    axis: str | None = None,
) -> list[dict]:
    """The committed MC items of one ``split`` ("validation" or "test"): of one family, of one ``axis``
    ("retention" / "skill"), or of all families (in ``FAMILIES`` order)."""
    if split not in EVAL_SPLITS:
        raise ValueError(f"unknown evaluation split {split!r}; known: {list(EVAL_SPLITS)}")
    if axis is not None and axis not in AXES:
        raise ValueError(f"unknown toy axis {axis!r}; known: {list(AXES)}")
    fams = FAMILIES if family is None else (family,)
    unknown = set(fams) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown toy family {sorted(unknown)}; known: {list(FAMILIES)}")
    fams = tuple(f for f in fams if axis is None or FAMILY_AXIS[f] == axis)
    root = Path(data_dir or toy_data_dir())
    return [
        item for fam in fams for item in _read_jsonl(root / f"eval_{fam}.jsonl") if item["split"] == split
    ]


if __name__ == "__main__":
    for written in write_toy_data():
        print(written)
