"""The toy world's *skills*: procedures applied to inputs given in the prompt (docs/method.md §10).

Why they exist: the toy world's facts about held-out people can only be *retained* through pruning — tuning
never mentions those people, so no method can re-learn them. The paper's claim (pruning while tuning beats
pruning before or after tuning) needs something tuning *can* recover. A skill is such a thing: one general
procedure, taught by the pre-training corpus on some stories, exercised by the instruction data on other
stories, and evaluated on stories about people whose names appear nowhere else.

Four families, each an :class:`Example` with a corpus-style cloze (``context`` + " " + choice) and a
natural question (instruction data and the lettered protocol of docs/method.md §9):

- ``add`` — "Kira has three cats and five dogs. In all, Kira has" → eight (pets);
- ``subtract`` — "Kira had twelve goats and gave five away. Now Kira has" → seven (goats);
- ``weekday`` — "Kira left on a Monday and came back three days later, on a" → Thursday;
- ``month`` — "Kira moved to Veldra in March and left two months later, in" → May.

Why these and not in-context look-ups: on the 1.2 M-parameter tiny base (``pat_lite.models.tinybase``),
within its few-minute pre-training budget, content-addressed retrieval ("A lives in X. B lives in Y. Where
does B live?", list successors, counting repeated words) stayed at chance in every format tried, even
trained alone; position-based copying (reversing or copying a word list) is learned but a 25 % norm cut
barely touches it, so it was dropped; procedures backed by a table the model must hold (the sums of
one-digit numbers, the differences, the week, the year) are learned *and* cut by pruning — like the facts —
while tuning on other stories exercises exactly the same table, so it could recover them (measured: a
300-step prune→tune run does not yet — ``data/toy/README.md`` has the numbers).

Every generator takes a private ``random.Random``, the pool of invented words its names come from, the
answer position (the caller balances positions) and the world's value words; nothing here touches global
state.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "N_CHOICES",
    "NUMBER_WORDS",
    "SKILL_FAMILIES",
    "SKILL_TEMPLATE_TEXT",
    "WEEKDAYS",
    "Example",
    "make_example",
]

N_CHOICES = 4
SKILL_FAMILIES: tuple[str, ...] = ("add", "subtract", "weekday", "month")
#: Number words 1..18: every operand and every result of ``add`` / ``subtract`` / ``weekday``.
NUMBER_WORDS: tuple[str, ...] = (
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
)  # fmt: skip
WEEKDAYS: tuple[str, ...] = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS: tuple[str, ...] = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
#: The fixed words of the skill templates (the tokenizer must know them; see pat_lite.models.tinybase).
SKILL_TEMPLATE_TEXT = (
    " ".join(NUMBER_WORDS + WEEKDAYS + MONTHS)
    + " has and In all, How many pets does have? had gave away. Now left on a came back day days later,"
    " On which day did moved to in month month months In which did"
)


@dataclass(frozen=True)
class Example:
    """One skill item in both views.

    ``context`` + " " + ``choices[answer]`` is the cloze view, scored by log-likelihood, and
    ``context`` + " " + answer + ``suffix`` + "." is the pre-training document; ``question`` →
    ``response`` is the instruction record, and ``question`` with the lettered ``choices`` is the paper's
    protocol (§9).
    """

    family: str
    context: str
    choices: tuple[str, ...]
    answer: int
    question: str
    response: str
    suffix: str = ""

    def document(self) -> tuple[str, list[tuple[int, int]]]:
        """The pre-training text and the character span of its answer (the only part worth predicting:
        the rest of a skill document is a random story by construction)."""
        start = len(self.context) + 1
        truth = self.choices[self.answer]
        return f"{self.context} {truth}{self.suffix}.", [(start, start + len(truth))]


def _place(truth: str, others: Sequence[str], answer: int) -> tuple[str, ...]:
    """``N_CHOICES`` choices: the first three ``others`` in order with ``truth`` inserted at ``answer``."""
    others = list(others)[: N_CHOICES - 1]
    return tuple(others[:answer] + [truth] + others[answer:])


def _near_numbers(rng: random.Random, value: int, low: int, high: int) -> list[str]:
    """Three distractors: other numbers within ±3 of ``value`` inside [low, high], as words."""
    near = [n for n in range(value - 3, value + 4) if n != value and low <= n <= high]
    return [NUMBER_WORDS[n - 1] for n in rng.sample(near, N_CHOICES - 1)]


def _amount(n: int, noun: str) -> str:
    """ "one cat", "three cats"."""
    return f"{NUMBER_WORDS[n - 1]} {noun}" + ("s" if n > 1 else "")


def _add(rng: random.Random, name: str, answer: int, vocab: dict[str, tuple[str, ...]]) -> Example:
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    first, second = rng.sample(vocab["pet"], 2)
    told = f"{name} has {_amount(a, first)} and {_amount(b, second)}."
    truth = NUMBER_WORDS[a + b - 1]
    return Example(
        family="add",
        context=f"{told} In all, {name} has",
        choices=_place(truth, _near_numbers(rng, a + b, 2, 18), answer),
        answer=answer,
        question=f"{told} How many pets does {name} have?",
        response=f"In all, {name} has {truth} pets.",
        suffix=" pets",
    )


def _subtract(rng: random.Random, name: str, answer: int, vocab: dict[str, tuple[str, ...]]) -> Example:
    gave, left = rng.randint(1, 9), rng.randint(1, 9)
    pet = rng.choice(vocab["pet"])
    told = f"{name} had {_amount(gave + left, pet)} and gave {NUMBER_WORDS[gave - 1]} away."
    truth = NUMBER_WORDS[left - 1]
    noun = pet + ("s" if left > 1 else "")
    return Example(
        family="subtract",
        context=f"{told} Now {name} has",
        choices=_place(truth, _near_numbers(rng, left, 1, 9), answer),
        answer=answer,
        question=f"{told} How many {pet}s does {name} have now?",
        response=f"Now {name} has {truth} {noun}.",
        suffix=f" {noun}",
    )


def _weekday(rng: random.Random, name: str, answer: int, vocab: dict[str, tuple[str, ...]]) -> Example:
    start, days = rng.randrange(len(WEEKDAYS)), rng.randint(1, 6)
    truth = WEEKDAYS[(start + days) % len(WEEKDAYS)]
    others = [d for d in WEEKDAYS if d not in (truth, WEEKDAYS[start])]
    told = f"{name} left on a {WEEKDAYS[start]} and came back {_amount(days, 'day')} later"
    return Example(
        family="weekday",
        context=f"{told}, on a",
        choices=_place(truth, rng.sample(others, N_CHOICES - 1), answer),
        answer=answer,
        question=f"{told}. On which day did {name} come back?",
        response=f"{name} came back on a {truth}.",
    )


def _month(rng: random.Random, name: str, answer: int, vocab: dict[str, tuple[str, ...]]) -> Example:
    start, months = rng.randrange(len(MONTHS)), rng.randint(1, 11)
    truth = MONTHS[(start + months) % len(MONTHS)]
    others = [m for m in MONTHS if m not in (truth, MONTHS[start])]
    city = rng.choice(vocab["city"])
    told = f"{name} moved to {city} in {MONTHS[start]} and left {_amount(months, 'month')} later"
    return Example(
        family="month",
        context=f"{told}, in",
        choices=_place(truth, rng.sample(others, N_CHOICES - 1), answer),
        answer=answer,
        question=f"{told}. In which month did {name} leave?",
        response=f"{name} left in {truth}.",
    )


_GENERATORS: dict[str, Callable[..., Example]] = {
    "add": _add,
    "subtract": _subtract,
    "weekday": _weekday,
    "month": _month,
}


def make_example(
    family: str,
    rng: random.Random,
    names: Sequence[str],
    answer: int,
    vocab: dict[str, tuple[str, ...]],
) -> Example:
    """One ``family`` example drawn with ``rng``: its person is named from ``names`` (invented lower-case
    words), its objects come from the world's value ``vocab``, and the right choice is at ``answer``."""
    if not 0 <= answer < N_CHOICES:
        raise ValueError(f"answer position must be in 0..{N_CHOICES - 1}, got {answer}")
    if family not in _GENERATORS:
        raise ValueError(f"unknown skill family {family!r}; known: {list(SKILL_FAMILIES)}")
    return _GENERATORS[family](rng, rng.choice(names).capitalize(), answer, vocab)
