"""The paper's evaluation protocol as lm-eval building blocks, and the task catalogue (docs/method.md §9).

§9: the paper scores 14 zero-shot tasks OpenCompass-style — the question and its lettered choices are put
in the Alpaca template, the model generates a short greedy answer, and the prediction is the first capital
letter of the answer that is a valid label (A .. the letter of the last choice). This module holds

- the prompt (:func:`paper_prompt`) and the letter extraction (:func:`first_valid_letter`);
- the lm-eval hooks that the task YAMLs under ``data/lm_eval_tasks`` reference through the thin shim
  ``data/lm_eval_tasks/pat_tasks.py`` (``!function pat_tasks.<name>``): ``process_docs`` normalisers that
  turn each hub dataset's own fields into ``pat_question`` / ``pat_choices`` / ``pat_label``, the
  ``doc_to_text`` / ``doc_to_target`` pair, the custom filter and ``process_results``;
- the toy loader (``custom_dataset``) that finds ``data/toy`` relative to this repository, so the YAMLs
  work from any working directory, and the toy world's per-axis accuracy (retention / skill, §10);
- :data:`PAPER14`, the mapping of the paper's 14 tasks to lm-eval task names (log-likelihood scoring =
  lm-eval's stock tasks; paper scoring = this project's ``pat_*`` tasks on the same datasets).

Nothing here imports lm-eval, so it is cheap to import and unit-test.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pat_lite.data.prompts import ALPACA_SYSTEM, LETTERS, format_prompt, lettered_question
from pat_lite.data.toyworld import AXES, EVAL_SPLITS, toy_data_dir
from pat_lite.resources import data_dir

__all__ = [
    "ALPACA_SYSTEM",
    "INVALID",
    "PAPER14",
    "PaperTask",
    "TASKS_DIR",
    "default_toy_dir",
    "first_letter_filter",
    "first_valid_letter",
    "lettered_question",
    "load_toy",
    "paper_doc_to_target",
    "paper_doc_to_text",
    "paper_process_results",
    "paper_prompt",
    "toy_axes",
    "toy_axis_accuracies",
    "toy_families",
    "toy_task_yaml",
    "write_toy_task_yamls",
]

#: The lm-eval ``include_path`` of this project (task YAMLs + the ``pat_tasks.py`` shim).
TASKS_DIR = data_dir() / "lm_eval_tasks"
#: What the filter returns when the generation holds no valid label (scored as wrong).
INVALID = "[invalid]"


# ----------------------------------------------------------------------------------------- the protocol
def paper_prompt(question: str, choices: Sequence[str]) -> str:
    """The §9 prompt: the lettered question inside the Alpaca template, ending in ``### Response:\\n``."""
    return format_prompt(lettered_question(question, choices))


def first_valid_letter(text: str, n_choices: int) -> str:
    """First capital letter of ``text`` that is a valid label (A .. LETTERS[n_choices-1]); else INVALID.

    OpenCompass's ``first_capital_postprocess`` restricted to the labels of the question (§9): capitals
    that are not labels (e.g. the "T" of "The answer is B") are skipped.
    """
    valid = set(LETTERS[:n_choices])
    for ch in text:
        if ch in valid:
            return ch
    return INVALID


def paper_doc_to_text(doc: dict) -> str:
    """lm-eval ``doc_to_text`` of the paper-protocol tasks (needs a normalised doc, see ``process_*``)."""
    return paper_prompt(doc["pat_question"], doc["pat_choices"])


def paper_doc_to_target(doc: dict) -> str:
    """lm-eval ``doc_to_target``: the gold letter."""
    return LETTERS[int(doc["pat_label"])]


def first_letter_filter(resps: Sequence[Sequence[str]], docs: Sequence[dict]) -> list[list[str]]:
    """lm-eval ``custom`` filter: map every generation of every doc to its first valid letter."""
    return [
        [first_valid_letter(r, len(doc["pat_choices"])) for r in rs]
        for rs, doc in zip(resps, docs, strict=True)
    ]


def paper_process_results(doc: dict, results: Sequence[str]) -> dict[str, float]:
    """lm-eval ``process_results``: ``acc`` = 1 if the extracted letter is the gold letter."""
    return {"acc": float(results[0] == paper_doc_to_target(doc))}


# ------------------------------------------------------------------- per-dataset normalisers (hub schemas)
def _normalise(fn: Callable[[dict], tuple[str, list[str], int]]) -> Callable[[Any], Any]:
    """Wrap a row → (question, choices, label) function into an lm-eval ``process_docs`` (datasets.map)."""

    def process_docs(dataset: Any) -> Any:
        def row(doc: dict) -> dict:
            question, choices, label = fn(doc)
            return {"pat_question": question, "pat_choices": list(choices), "pat_label": int(label)}

        return dataset.map(row)

    process_docs.__doc__ = f"process_docs built from {fn.__name__}: {fn.__doc__}"
    process_docs.row_fn = fn  # type: ignore[attr-defined]
    return process_docs


def _yes_no(label_true: int) -> int:
    """Index of the gold answer in ``["Yes", "No"]`` for a SuperGLUE 0/1 label where 1 means true."""
    return 0 if int(label_true) == 1 else 1


def _arc(doc: dict) -> tuple[str, list[str], int]:
    """allenai/ai2_arc: question, choices{text,label}, answerKey (A-E or 1-5)."""
    return doc["question"], doc["choices"]["text"], doc["choices"]["label"].index(doc["answerKey"])


def _boolq(doc: dict) -> tuple[str, list[str], int]:
    """aps/super_glue boolq: passage, question, label (1 = true)."""
    return f"{doc['passage']}\nQuestion: {doc['question']}?", ["Yes", "No"], _yes_no(doc["label"])


def _copa(doc: dict) -> tuple[str, list[str], int]:
    """aps/super_glue copa: premise, choice1, choice2, question (cause/effect), label (0/1)."""
    return (
        f"{doc['premise']}\nWhat was the {doc['question']}?",
        [doc["choice1"], doc["choice2"]],
        doc["label"],
    )


def _hellaswag_clean(text: str) -> str:
    """lm-eval's HellaSwag cleaning (WikiHow "[title]" artefacts, brackets, double spaces)."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def _hellaswag(doc: dict) -> tuple[str, list[str], int]:
    """Rowan/hellaswag: activity_label, ctx_a, ctx_b, endings, label (a string)."""
    ctx = _hellaswag_clean(f"{doc['activity_label']}: {doc['ctx_a']} {doc['ctx_b'].capitalize()}")
    choices = [_hellaswag_clean(e) for e in doc["endings"]]
    return f"{ctx}\nWhich ending is the most likely continuation?", choices, int(doc["label"])


def _mmlu(doc: dict) -> tuple[str, list[str], int]:
    """cais/mmlu: question, subject, choices, answer (int)."""
    return doc["question"].strip(), doc["choices"], doc["answer"]


def _multirc(doc: dict) -> tuple[str, list[str], int]:
    """aps/super_glue multirc: paragraph, question, answer, label (1 = the answer is correct)."""
    question = f"{doc['paragraph']}\nQuestion: {doc['question']}\nCandidate answer: {doc['answer']}\n"
    return question + "Is the candidate answer correct?", ["Yes", "No"], _yes_no(doc["label"])


def _openbookqa(doc: dict) -> tuple[str, list[str], int]:
    """allenai/openbookqa (main): question_stem, choices{text,label}, answerKey."""
    key = doc["answerKey"].strip()
    return doc["question_stem"], doc["choices"]["text"], doc["choices"]["label"].index(key)


def _piqa(doc: dict) -> tuple[str, list[str], int]:
    """baber/piqa: goal, sol1, sol2, label (0/1)."""
    return f"Goal: {doc['goal']}\nWhich solution is better?", [doc["sol1"], doc["sol2"]], doc["label"]


def _rte(doc: dict) -> tuple[str, list[str], int]:
    """aps/super_glue rte: premise, hypothesis, label (0 = entailment)."""
    question = f"{doc['premise']}\nHypothesis: {doc['hypothesis']}\nDoes the text entail the hypothesis?"
    return question, ["Yes", "No"], int(doc["label"])


def _siqa(doc: dict) -> tuple[str, list[str], int]:
    """lighteval/siqa: context, question, answerA-C, label ("1".."3")."""
    choices = [doc["answerA"], doc["answerB"], doc["answerC"]]
    return f"{doc['context']}\nQuestion: {doc['question']}", choices, int(doc["label"]) - 1


def _wic(doc: dict) -> tuple[str, list[str], int]:
    """aps/super_glue wic: word, sentence1, sentence2, label (1 = same meaning)."""
    question = (
        f"Sentence 1: {doc['sentence1']}\nSentence 2: {doc['sentence2']}\n"
        f"Is the word '{doc['word']}' used with the same meaning in both sentences?"
    )
    return question, ["Yes", "No"], _yes_no(doc["label"])


def _winogrande(doc: dict) -> tuple[str, list[str], int]:
    """allenai/winogrande (winogrande_xl): sentence with "_", option1, option2, answer ("1"/"2")."""
    question = f"{doc['sentence']}\nWhich option correctly fills the blank (_)?"
    return question, [doc["option1"], doc["option2"]], int(doc["answer"]) - 1


def _wsc(doc: dict) -> tuple[str, list[str], int]:
    """aps/super_glue wsc.fixed: text, span1_text (noun), span2_text (pronoun), label (1 = coreferent)."""
    question = (
        f'{doc["text"]}\nIn the passage above, does the pronoun "{doc["span2_text"]}" refer to '
        f'"{doc["span1_text"]}"?'
    )
    return question, ["Yes", "No"], _yes_no(doc["label"])


def _toy(doc: dict) -> tuple[str, list[str], int]:
    """data/toy eval items: question, choices, answer (the ``context`` cloze is for log-likelihood)."""
    return doc["question"], doc["choices"], doc["answer"]


process_arc = _normalise(_arc)
process_boolq = _normalise(_boolq)
process_copa = _normalise(_copa)
process_hellaswag = _normalise(_hellaswag)
process_mmlu = _normalise(_mmlu)
process_multirc = _normalise(_multirc)
process_openbookqa = _normalise(_openbookqa)
process_piqa = _normalise(_piqa)
process_rte = _normalise(_rte)
process_siqa = _normalise(_siqa)
process_wic = _normalise(_wic)
process_winogrande = _normalise(_winogrande)
process_wsc = _normalise(_wsc)
process_toy = _normalise(_toy)


# ------------------------------------------------------------------------------------------ the catalogue
@dataclass(frozen=True)
class PaperTask:
    """One of the paper's 14 tasks (§9) and where it lives.

    ``loglik`` is lm-eval's stock task (or group) name, ``paper`` this project's generate-until task on the
    same hub dataset (``dataset_path``/``dataset_name``/``split`` as in its YAML).
    """

    label: str
    loglik: str
    paper: str
    dataset_path: str
    dataset_name: str | None
    split: str


PAPER14: tuple[PaperTask, ...] = (
    PaperTask("ARC-C", "arc_challenge", "pat_arc_challenge", "allenai/ai2_arc", "ARC-Challenge", "test"),
    PaperTask("ARC-E", "arc_easy", "pat_arc_easy", "allenai/ai2_arc", "ARC-Easy", "test"),
    PaperTask("BoolQ", "boolq", "pat_boolq", "aps/super_glue", "boolq", "validation"),
    PaperTask("COPA", "copa", "pat_copa", "aps/super_glue", "copa", "validation"),
    PaperTask("HellaSwag", "hellaswag", "pat_hellaswag", "Rowan/hellaswag", None, "validation"),
    PaperTask("MMLU", "mmlu", "pat_mmlu", "cais/mmlu", "all", "test"),
    PaperTask("MultiRC", "multirc", "pat_multirc", "aps/super_glue", "multirc", "validation"),
    PaperTask("OpenBookQA", "openbookqa", "pat_openbookqa", "allenai/openbookqa", "main", "test"),
    PaperTask("PIQA", "piqa", "pat_piqa", "baber/piqa", None, "validation"),
    PaperTask("RTE", "sglue_rte", "pat_rte", "aps/super_glue", "rte", "validation"),
    PaperTask("SIQA", "social_iqa", "pat_siqa", "lighteval/siqa", None, "validation"),
    PaperTask("WiC", "wic", "pat_wic", "aps/super_glue", "wic", "validation"),
    PaperTask(
        "WinoGrande", "winogrande", "pat_winogrande", "allenai/winogrande", "winogrande_xl", "validation"
    ),
    PaperTask("WSC", "wsc", "pat_wsc", "aps/super_glue", "wsc.fixed", "validation"),
)


# ------------------------------------------------------------------------------------------------ the toys
def default_toy_dir() -> Path:
    """``$PAT_TOY_DIR`` if set, else the shipped ``data/toy``."""
    return Path(os.environ.get("PAT_TOY_DIR") or toy_data_dir())


def toy_families(toy_dir: str | os.PathLike | None = None) -> list[str]:
    """Families with an ``eval_<family>.jsonl`` file in ``toy_dir`` (sorted)."""
    root = Path(toy_dir) if toy_dir else default_toy_dir()
    return sorted(p.stem[len("eval_") :] for p in root.glob("eval_*.jsonl"))


def _toy_rows(family: str, toy_dir: str | os.PathLike | None) -> list[dict]:
    path = (Path(toy_dir) if toy_dir else default_toy_dir()) / f"eval_{family}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"toy eval file {path} not found (generate it: python -m pat_lite.data.toyworld)"
        )
    with path.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    bad = [r.get("id") for r in rows if r.get("split") not in EVAL_SPLITS or r.get("axis") not in AXES]
    if bad:
        raise ValueError(
            f"{path}: items {bad[:3]} lack a valid 'split' {list(EVAL_SPLITS)} or 'axis' {list(AXES)} "
            "(regenerate: python -m pat_lite.data.toyworld)"
        )
    return rows


def toy_axes(toy_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """``{family: axis}`` ("retention" / "skill") of every family in ``toy_dir``, read from its items."""
    return {fam: _toy_rows(fam, toy_dir)[0]["axis"] for fam in toy_families(toy_dir)}


def load_toy(family: str, toy_dir: str | None = None, **_ignored: Any) -> Any:
    """lm-eval ``custom_dataset``: ``DatasetDict({"validation": ..., "test": ...})`` of
    ``eval_<family>.jsonl``
    (a split without items is left out; the task YAMLs evaluate ``test``).

    lm-eval calls it with the task's metadata and ``dataset_kwargs`` as keyword arguments (extra keys are
    ignored). The file is found via ``toy_dir`` (a dataset_kwargs key), else ``$PAT_TOY_DIR``, else this
    repository's ``data/toy`` — never relative to the working directory.
    """
    import datasets

    rows = _toy_rows(family, toy_dir)
    splits = {split: [r for r in rows if r["split"] == split] for split in EVAL_SPLITS}
    return datasets.DatasetDict(
        {split: datasets.Dataset.from_list(part) for split, part in splits.items() if part}
    )


def toy_axis_accuracies(tasks: dict[str, dict[str, Any]], axis_of: dict[str, str]) -> dict[str, float]:
    """Accuracy per axis from per-task results ``{task: {"acc", "n", ...}}``: the item-weighted mean over
    the axis's tasks (as :func:`pat_lite.evaluation.mc.toy_scores` computes it, but as a fraction).
    ``axis_of`` maps task name → axis; tasks without an accuracy are skipped."""
    totals: dict[str, list[float]] = {}
    for name, result in tasks.items():
        if result.get("acc") is None or not result.get("n"):
            continue
        hits_and_n = totals.setdefault(axis_of[name], [0.0, 0.0])
        hits_and_n[0] += result["acc"] * result["n"]
        hits_and_n[1] += result["n"]
    return {axis: hits / n for axis in AXES if axis in totals for hits, n in [totals[axis]]}


def toy_task_yaml(family: str, scoring: str, axis: str) -> str:
    """Text of the committed per-family toy YAML (``toy_<family>`` or ``toy_<family>_paper``), tagged with
    the set (``toy`` / ``toy_paper``) and its axis (e.g. ``toy_skill`` / ``toy_skill_paper``)."""
    if axis not in AXES:
        raise ValueError(f"axis must be one of {list(AXES)}, not {axis!r}")
    if scoring not in ("loglik", "paper"):
        raise ValueError(f"scoring must be 'loglik' or 'paper', not {scoring!r}")
    suffix = "" if scoring == "loglik" else "_paper"
    return (
        f"# generated by pat_lite.evaluation.paper_tasks.write_toy_task_yamls — do not edit\n"
        f"include: _toy_{scoring}_template_yaml\ntask: toy_{family}{suffix}\n"
        f"tag: [toy{suffix}, toy_{axis}{suffix}]\n"
        f"dataset_kwargs:\n  family: {family}\n"
    )


def write_toy_task_yamls(
    toy_dir: str | os.PathLike | None = None, tasks_dir: str | os.PathLike | None = None
) -> list[Path]:
    """(Re)write ``toy_<family>.yaml`` and ``toy_<family>_paper.yaml`` for every family found in ``toy_dir``
    and delete stale ones, so the stock ``lm_eval`` CLI sees the same toy tasks as :func:`evaluate`."""
    out = Path(tasks_dir) if tasks_dir else TASKS_DIR
    wanted = {}
    for fam, axis in toy_axes(toy_dir).items():
        wanted[out / f"toy_{fam}.yaml"] = toy_task_yaml(fam, "loglik", axis)
        wanted[out / f"toy_{fam}_paper.yaml"] = toy_task_yaml(fam, "paper", axis)
    for stale in set(out.glob("toy_*.yaml")) - set(wanted):
        stale.unlink()
    for path, text in wanted.items():
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8", newline="\n")
    return sorted(wanted)


if __name__ == "__main__":
    for written in write_toy_task_yamls():
        print(written)
