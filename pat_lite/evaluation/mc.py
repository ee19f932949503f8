"""A small, fast log-likelihood multiple-choice scorer (no lm-eval), and the toy world's two-axis score.

Used by the tiny-base quality gates (``pat_lite.models.tinybase``), the demo and the studies, and as a
cross-check for the lm-eval path. Scoring follows lm-eval's ``multiple_choice`` convention: the score of a
choice is the sum of the log-probabilities of the tokens of ``" " + choice`` given ``context`` (with BOS if
the tokenizer adds one), and the prediction is the arg-max. Context and continuation are tokenized
separately and their ids concatenated, so the boundary is exact.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch

from pat_lite.utils.batching import right_pad

__all__ = ["chance_accuracy", "choice_logprobs", "multiple_choice_accuracy", "toy_scores"]

TARGET_DELIMITER = " "


def _encode_pairs(tokenizer, items: Sequence[dict]) -> list[tuple[list[int], list[int]]]:
    """(context ids incl. BOS, continuation ids) for every (item, choice), item-major."""
    pairs = []
    for item in items:
        ctx = tokenizer(item["context"])["input_ids"]
        for choice in item["choices"]:
            cont = tokenizer(TARGET_DELIMITER + choice, add_special_tokens=False)["input_ids"]
            if not cont:
                raise ValueError(f"choice {choice!r} of item {item.get('id')} tokenizes to nothing")
            pairs.append((list(ctx), list(cont)))
    return pairs


@torch.no_grad()
def choice_logprobs(model, tokenizer, items: Sequence[dict], batch_size: int = 32) -> list[list[float]]:
    """Sum log-prob of each choice's continuation, per item: ``[[lp(choice0), lp(choice1), ...], ...]``.

    Batched over (item, choice) pairs, right-padded; runs on the model's device in eval mode (the model's
    previous train/eval mode is restored).
    """
    pairs = _encode_pairs(tokenizer, items)
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id or 0
    was_training = model.training
    model.eval()
    scores: list[float] = []
    try:
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            ids, mask = right_pad([ctx + cont for ctx, cont in chunk], pad_id)
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            logprobs = torch.log_softmax(logits, dim=-1).cpu()
            for row, (ctx, cont) in enumerate(chunk):
                # token at position t is predicted by the logits at t - 1
                positions = torch.arange(len(ctx) - 1, len(ctx) + len(cont) - 1)
                scores.append(logprobs[row, positions, torch.tensor(cont)].sum().item())
    finally:
        model.train(was_training)
    out, k = [], 0
    for item in items:
        n = len(item["choices"])
        out.append(scores[k : k + n])
        k += n
    return out


def multiple_choice_accuracy(model, tokenizer, items: Sequence[dict], batch_size: int = 32) -> dict:
    """Accuracy of arg-max log-likelihood choice: ``{"accuracy", "n", "per_family": {family: acc}}``.

    Items follow ``pat_lite.data.toyworld.eval_items``: ``context``, ``choices`` (no leading space) and
    ``answer`` (index); ``family`` is optional (missing → "all").
    """
    if not items:
        return {"accuracy": float("nan"), "n": 0, "per_family": {}}
    lps = choice_logprobs(model, tokenizer, items, batch_size=batch_size)
    hits: dict[str, list[int]] = defaultdict(list)
    for item, lp in zip(items, lps, strict=True):
        pred = max(range(len(lp)), key=lp.__getitem__)
        hits[item.get("family", "all")].append(int(pred == item["answer"]))
    flat = [h for fam in hits.values() for h in fam]
    return {
        "accuracy": sum(flat) / len(flat),
        "n": len(flat),
        "per_family": {fam: sum(v) / len(v) for fam, v in hits.items()},
    }


def chance_accuracy(items: Sequence[dict]) -> float:
    """Expected accuracy of uniform guessing: the mean of 1 / (number of choices)."""
    if not items:
        return float("nan")
    return sum(1.0 / len(item["choices"]) for item in items) / len(items)


def toy_scores(
    model,
    tokenizer,
    split: str = "test",
    items: Sequence[dict] | None = None,
    batch_size: int = 32,
) -> dict:
    """The toy world's score on both axes, in percent (docs/method.md §10).

    ``{"retention", "skill", "average", "per_family": {family: %}, "n", "n_per_axis": {axis: n}}`` where
    an axis is the item-weighted accuracy over its families and ``average`` is the mean of the two axes
    (each counts half, whatever its number of items). ``items`` default to the committed
    ``data/toy`` items of ``split``; pass them to score a world generated in memory.
    """
    from pat_lite.data.toyworld import AXES, load_toy_eval

    if items is None:
        items = load_toy_eval(split=split)
    by_axis = {axis: [it for it in items if it["axis"] == axis] for axis in AXES}
    missing = [axis for axis, its in by_axis.items() if not its]
    if missing:
        raise ValueError(f"toy_scores needs items of both axes; none for {missing}")
    lps = choice_logprobs(model, tokenizer, items, batch_size=batch_size)
    hits: dict[str, list[int]] = defaultdict(list)
    axis_hits: dict[str, list[int]] = defaultdict(list)
    for item, lp in zip(items, lps, strict=True):
        hit = int(max(range(len(lp)), key=lp.__getitem__) == item["answer"])
        hits[item["family"]].append(hit)
        axis_hits[item["axis"]].append(hit)
    scores = {axis: 100.0 * sum(axis_hits[axis]) / len(axis_hits[axis]) for axis in AXES}
    return {
        **scores,
        "average": sum(scores.values()) / len(scores),
        "per_family": {fam: 100.0 * sum(v) / len(v) for fam, v in hits.items()},
        "n": len(items),
        "n_per_axis": {axis: len(axis_hits[axis]) for axis in AXES},
    }
