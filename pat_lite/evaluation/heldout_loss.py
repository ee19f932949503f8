"""Held-out language-model loss on a fixed token budget: a quick, tokenizer-level yardstick.

lm-eval's rolling word perplexity (`realtext_perplexity`) is the study's headline; it reads every held-out
document whole (9,431 tokens; 130 CPU-seconds for the 432-wide SmolLM2 on one thread, against 44 for
this measure's 4,096 tokens). Comparing many *cuts* of one base (`pat_lite.baselines.cut_quality`) and
putting the tuned models beside them needs a cheaper measure in one unit: the mean next-token
cross-entropy (nats per token) over the first `token_budget` tokens of the same documents, each document
on its own (BOS + text, at most `window` tokens), no context carried over. All models compared share
one tokenizer, so the numbers compare directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pat_lite.utils.batching import right_pad

__all__ = ["DEFAULT_TOKEN_BUDGET", "heldout_loss"]

#: Tokens scored (SmolLM2-135M: ~15 CPU-seconds; the standard error of the mean is ~0.03 nats at this size).
DEFAULT_TOKEN_BUDGET = 4096


def _documents_within_budget(tokenizer, texts: Sequence[str], budget: int, window: int) -> list[list[int]]:
    chosen, total = [], 0
    for text in texts:
        ids = tokenizer(text, add_special_tokens=True, truncation=True, max_length=window)["input_ids"]
        if len(ids) < 2:
            continue
        ids = ids[: max(2, budget - total + 1)]  # the last document fills the budget exactly
        chosen.append(ids)
        total += len(ids) - 1  # the first token is not predicted
        if total >= budget:
            break
    return chosen


@torch.no_grad()
def heldout_loss(
    model,
    tokenizer,
    texts: Sequence[str],
    token_budget: int = DEFAULT_TOKEN_BUDGET,
    window: int = 512,
    batch_size: int = 4,
) -> float:
    """Mean next-token cross-entropy (nats) of `model` over the first `token_budget` predicted tokens of
    `texts` (in order), each text scored alone from its start; non-finite results raise ValueError."""
    documents = _documents_within_budget(tokenizer, texts, token_budget, window)
    if not documents:
        raise ValueError("no held-out text to score: every document is empty")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    total_loss, total_tokens = 0.0, 0
    try:
        for start in range(0, len(documents), batch_size):
            ids, attention = right_pad(documents[start : start + batch_size], pad)
            logits = model(input_ids=ids.to(device), attention_mask=attention.to(device)).logits.float()
            targets = ids[:, 1:].to(device)
            losses = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
            ).view_as(targets)
            valid = attention[:, 1:].to(device).bool()
            total_loss += losses[valid].sum().item()
            total_tokens += int(valid.sum().item())
    finally:
        model.train(was_training)
    loss = total_loss / total_tokens
    if not torch.isfinite(torch.tensor(loss)):
        raise ValueError(f"the held-out loss is {loss}: the model's logits are not finite")
    return loss
