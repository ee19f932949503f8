"""lm-eval hooks of the real-text task set (``tasks="realtext"``): held-out CPython documentation.

Two tasks, YAMLs in ``data/lm_eval_tasks`` (reached through the ``pat_tasks.py`` shim), data built by
``pat_lite.data.realtext`` and committed under ``data/realtext``:

- ``realtext_perplexity`` — ``loglikelihood_rolling`` over held-out documents (whole sections and
  docstrings). lm-eval reports ``word_perplexity`` = exp(−Σ log p / Σ words), ``byte_perplexity`` =
  exp(−Σ log p / Σ bytes) and ``bits_per_byte`` (words = whitespace-separated pieces of the document).
  All three are the same total log-likelihood over different denominators, so they rank models alike;
  **word perplexity is the headline**: it does not depend on the tokenizer (a pruned model and its base
  share one anyway), it is the unit of WikiText-style reports, and its scale (tens for a good model,
  thousands for a broken one) shows what pruning costs at a glance.
- ``realtext_cloze`` — 4-way multiple choice: a held-out sentence prefix, the word that really follows vs
  three distractors of similar corpus frequency, scored ``context + " " + choice`` (``acc``; ``acc_norm``
  divides by the choice's byte length). Chance is 25 %.

``realtext_validation_perplexity`` is ``realtext_perplexity`` on the validation units' documents: what a
study chooses its learning rate on (never the held-out test).

Nothing here imports lm-eval.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pat_lite.data.realtext import load_realtext_cloze, load_realtext_documents, realtext_dir

__all__ = [
    "REALTEXT_TASKS",
    "REALTEXT_VALIDATION_TASK",
    "realtext_cloze_dataset",
    "realtext_perplexity_dataset",
    "realtext_validation_perplexity_dataset",
]

#: The lm-eval tasks of the ``realtext`` task set, in report order.
REALTEXT_TASKS = ("realtext_perplexity", "realtext_cloze")
#: The validation task (perplexity on the validation units), for choosing hyper-parameters.
REALTEXT_VALIDATION_TASK = "realtext_validation_perplexity"


def _root(directory: str | os.PathLike | None) -> Path:
    return Path(directory) if directory else realtext_dir()


def realtext_perplexity_dataset(
    realtext_dir: str | None = None, split: str = "heldout", **_ignored: Any
) -> Any:
    """lm-eval ``custom_dataset``: ``DatasetDict({"test": eval_perplexity.jsonl})`` (text, unit, source),
    or the validation documents with ``split="validation"``.

    ``realtext_dir`` (a ``dataset_kwargs`` key) points at another build of the files; lm-eval's metadata
    keywords are ignored.
    """
    import datasets

    documents = load_realtext_documents(_root(realtext_dir), split=split)
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(documents)})


def realtext_validation_perplexity_dataset(realtext_dir: str | None = None, **_ignored: Any) -> Any:
    """lm-eval ``custom_dataset`` of ``realtext_validation_perplexity``: the validation documents."""
    return realtext_perplexity_dataset(realtext_dir, split="validation")


def realtext_cloze_dataset(realtext_dir: str | None = None, **_ignored: Any) -> Any:
    """lm-eval ``custom_dataset``: ``DatasetDict({"test": eval_cloze.jsonl})`` (context, choices, answer)."""
    import datasets

    return datasets.DatasetDict(
        {"test": datasets.Dataset.from_list(load_realtext_cloze(_root(realtext_dir)))}
    )
