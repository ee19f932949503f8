"""The real-text data (CPython's reference manual and docstrings): deterministic builder, committed files,
splits disjoint by unit, Alpaca records, the cloze items, and both lm-eval tasks on a real tokenizer."""

from __future__ import annotations

import json
import math
import os
import platform
import re
import subprocess
import sys

import pytest

from pat_lite.data import realtext
from pat_lite.data.instructions import load_instruction_data

BUILD_SCRIPT = (
    "import json, sys; from pat_lite.data.realtext import build_realtext; "
    "json.dump(build_realtext(), sys.stdout)"
)


@pytest.fixture(scope="module")
def built() -> dict[str, str]:
    return realtext.build_realtext()


@pytest.fixture(scope="module")
def committed() -> dict[str, str]:
    return {name: (realtext.realtext_dir() / name).read_text(encoding="utf-8") for name in realtext.FILES}


def _rows(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def _key(text: str) -> str:
    return " ".join(text.split())


def test_the_committed_files_are_regenerated_byte_for_byte(built, committed):
    manifest = json.loads(committed["manifest.json"])
    here = (platform.python_version(), sys.platform)
    if (manifest["python_version"], manifest["platform"]) != here:
        pytest.skip(
            f"data/realtext was built on {manifest['python_version']}/{manifest['platform']}, not {here}"
        )
    assert sorted(built) == sorted(realtext.FILES)
    for name in realtext.FILES:
        assert built[name] == committed[name], f"{name} differs: run python -m pat_lite.data.realtext"


@pytest.mark.slow
def test_the_build_does_not_depend_on_the_process(built):
    """Another interpreter with another hash seed builds the same files (no set or dict-order accidents)."""
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    run = subprocess.run(
        [sys.executable, "-c", BUILD_SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout) == built


def test_splits_are_disjoint_by_unit_and_nothing_held_out_or_validating_is_tuned_on(built):
    rows = {split: _rows(built[f"{split}.jsonl"]) for split in realtext.SPLITS}
    units = {split: {r["unit"] for r in records} for split, records in rows.items()}
    manifest = json.loads(built["manifest.json"])
    for split in realtext.SPLITS:
        assert units[split] and all(realtext.split_of(u) == split for u in units[split])
        assert units[split] <= set(manifest["units"][split])
        for other in realtext.SPLITS:
            assert other == split or not set(manifest["units"][split]) & set(manifest["units"][other])
    total = sum(len(manifest["units"][split]) for split in realtext.SPLITS)
    assert 0.1 < len(manifest["units"]["heldout"]) / total < 0.3
    assert 0.05 < len(manifest["units"]["validation"]) / total < 0.25

    def paragraphs(texts):
        return {_key(p) for text in texts for p in re.split(r"\n\s*\n", text)}

    tuned = paragraphs(r["response"] for r in rows["tune"])
    validating = paragraphs(
        [r["response"] for r in rows["validation"]]
        + [d["text"] for d in _rows(built["validation_perplexity.jsonl"])]
    )
    held_out = paragraphs(
        [r["response"] for r in rows["heldout"]] + [d["text"] for d in _rows(built["eval_perplexity.jsonl"])]
    )
    for earlier, later in ((held_out, validating), (held_out, tuned), (validating, tuned)):
        shared = [p for p in earlier & later if len(p) >= realtext.MIN_SHARED_CHARS]
        assert not shared, shared[:3]
    # the umbrella topic "compound" repeats the "with" section: it is kept once
    with_sections = [
        r for split in realtext.SPLITS for r in rows[split]
        if r["instruction"].startswith("Explain the `with` statement.")
    ]  # fmt: skip
    assert len({r["unit"] for r in with_sections}) == 1


def test_validation_documents_come_from_validation_units_only(built):
    units = set(json.loads(built["manifest.json"])["units"]["validation"])
    documents = _rows(built["validation_perplexity.jsonl"])
    assert documents and {d["unit"] for d in documents} <= units
    assert sum(len(d["text"]) for d in documents) <= realtext.PERPLEXITY_CHARS
    assert realtext.load_realtext_documents(split="validation") == documents


def test_evaluation_data_comes_from_heldout_units_only(built):
    heldout_units = set(json.loads(built["manifest.json"])["units"]["heldout"])
    documents, cloze = _rows(built["eval_perplexity.jsonl"]), _rows(built["eval_cloze.jsonl"])
    assert {d["unit"] for d in documents} <= heldout_units and {c["unit"] for c in cloze} <= heldout_units
    assert sum(len(d["text"]) for d in documents) <= realtext.PERPLEXITY_CHARS
    assert all(len(d["text"]) <= realtext.MAX_DOCUMENT_CHARS for d in documents)
    assert {d["source"] for d in documents} == {"reference", "docstring"}


def test_records_are_alpaca_fields_of_cpu_size(built):
    tune = _rows(built["tune.jsonl"])
    assert len(tune) > 1000
    assert all(r["instruction"].strip() and r["response"].strip() for r in tune)
    assert {r["source"] for r in tune} == {"reference", "docstring"}
    # a paragraph is never cut, so only a single over-long line may exceed the limit
    too_long = [r for r in tune if len(r["response"]) > realtext.MAX_RESPONSE_CHARS]
    assert all(len(max(r["response"].split("\n"), key=len)) > realtext.MAX_RESPONSE_CHARS for r in too_long)
    by_instruction = {r["instruction"]: r["response"] for r in tune}
    with_statement = next(
        v for k, v in by_instruction.items() if k.startswith("Explain the `with` statement.")
    )
    assert with_statement.startswith('The "with" statement is used to wrap the execution of a block')
    dumps = next(v for k, v in by_instruction.items() if k.startswith("What does `json.dumps` do?"))
    assert dumps.startswith("Serialize ``obj`` to a JSON formatted ``str``.")
    parts = [k for k in by_instruction if k.startswith("What does `json.dumps` do? (part ")]
    assert len(parts) >= 2 and parts[0].endswith(f"(part 1 of {len(parts)})")


def test_cloze_items_offer_the_true_next_word_and_three_frequency_matched_distractors(built):
    items = _rows(built["eval_cloze.jsonl"])
    assert len(items) == realtext.N_CLOZE
    assert len({i["id"] for i in items}) == len(items)
    heldout_text = _key(" ".join(r["response"] for r in _rows(built["heldout.jsonl"])))
    answers = [0, 0, 0, 0]
    for item in items:
        choices, answer = item["choices"], item["choices"][item["answer"]]
        answers[item["answer"]] += 1
        assert len(set(choices)) == 4 and all(re.fullmatch(r"[a-z]{4,}", c) for c in choices)
        assert f"{item['context']} {answer}" in heldout_text, item["id"]
        assert len(item["context"].split()) >= realtext.CLOZE_MIN_WORDS_BEFORE
        counts = item["counts"]
        assert min(counts) >= realtext.CLOZE_MIN_COUNT and max(counts) <= 3 * min(counts) + 20, item
    assert min(answers) > 0.15 * len(items), f"the answer position must not be guessable: {answers}"


def test_load_instruction_data_knows_realtext(committed):
    data = load_instruction_data("realtext")
    assert len(data) == len(_rows(committed["tune.jsonl"]))
    assert {"instruction", "response"} <= set(data.column_names)
    assert (
        realtext.load_realtext_instructions("heldout")[0]["unit"]
        in realtext.read_manifest()["units"]["heldout"]
    )
    assert (
        realtext.load_realtext_instructions("validation")[0]["unit"]
        in realtext.read_manifest()["units"]["validation"]
    )
    with pytest.raises(ValueError, match="realtext split"):
        realtext.load_realtext_instructions("test")


# ------------------------------------------------------------------------------------- through lm-eval
def test_realtext_tasks_report_perplexity_and_cloze_accuracy_through_lm_eval(tiny_base_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pat_lite.evaluation import lmeval
    from pat_lite.evaluation.mc import multiple_choice_accuracy

    model = AutoModelForCausalLM.from_pretrained(tiny_base_path).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_base_path)
    limit = 6
    res = lmeval.evaluate(model, tokenizer, tasks="realtext", limit=limit, batch_size=4)
    assert res["task_set"] == "realtext" and list(res["tasks"]) == ["realtext_perplexity", "realtext_cloze"]

    perplexity = res["tasks"]["realtext_perplexity"]
    assert (
        perplexity["acc"] is None
        and perplexity["n"] == limit
        and perplexity["metric"] == "word_perplexity,none"
    )
    metrics = perplexity["metrics"]
    documents = [d["text"] for d in realtext.load_realtext_documents()[:limit]]
    words = sum(len(re.split(r"\s+", d)) for d in documents)
    n_bytes = sum(len(d.encode("utf-8")) for d in documents)
    # both perplexities are exp(-loglikelihood / count) of one total log-likelihood
    assert math.log(metrics["word_perplexity"]) * words == pytest.approx(
        math.log(metrics["byte_perplexity"]) * n_bytes
    )
    assert metrics["bits_per_byte"] == pytest.approx(math.log2(metrics["byte_perplexity"]))
    assert metrics["word_perplexity"] > metrics["byte_perplexity"] > 1

    cloze = res["tasks"]["realtext_cloze"]
    reference = multiple_choice_accuracy(model, tokenizer, realtext.load_realtext_cloze()[:limit])
    assert cloze["n"] == limit and cloze["acc"] == pytest.approx(reference["accuracy"])
    assert res["average"] == cloze["acc"]
    markdown = lmeval.to_markdown(res)
    assert "| held-out perplexity | `realtext_perplexity` | 6 |" in markdown and "word perplexity" in markdown

    with pytest.raises(ValueError, match="log-likelihood only"):
        lmeval.evaluate(model, tokenizer, tasks="realtext", scoring="paper")


def test_pat_lite_eval_runs_the_realtext_set_on_an_embedded_model_by_name(tiny_base_path, tmp_path, capsys):
    from pat_lite.cli import main

    assert (
        main(["eval", "--model", "tiny", "--tasks", "realtext", "--limit", "2", "--out-dir", str(tmp_path)])
        == 0
    )
    # "--scoring both" (the default) runs the log-likelihood scoring only: there is no lettered protocol
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "eval_realtext_loglik.json",
        "eval_realtext_loglik.md",
    ]
    saved = json.loads((tmp_path / "eval_realtext_loglik.json").read_text())
    assert saved["tasks"]["realtext_perplexity"]["metrics"]["word_perplexity"] > 1
    assert str(tiny_base_path) in saved["model"]
    assert "held-out cloze" in capsys.readouterr().out
