"""The paper's prompt formats (docs/method.md §7, §9): the Alpaca template and the lettered question.

    {system}\n\n### Instruction:\n{instruction}\n\n### Response:\n{response}</s>

Training renders every instruction record with `format_prompt`; the paper's evaluation protocol wraps a
lettered multiple-choice question (`lettered_question`) in the same template and reads the answer letter.
"""

from __future__ import annotations

from collections.abc import Sequence

ALPACA_SYSTEM = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def format_prompt(instruction: str) -> str:
    """The Alpaca prompt (everything before the response), exactly as in the paper (§7)."""
    return f"{ALPACA_SYSTEM}\n\n### Instruction:\n{instruction}\n\n### Response:\n"


def lettered_question(question: str, choices: Sequence[str]) -> str:
    """``question``, then one ``A. choice`` line per choice, then ``Answer with the letter.``"""
    if not 1 <= len(choices) <= len(LETTERS):
        raise ValueError(f"need 1..{len(LETTERS)} choices, got {len(choices)}")
    lines = [question] + [f"{LETTERS[i]}. {c}" for i, c in enumerate(choices)]
    return "\n".join(lines) + "\nAnswer with the letter."
