"""lm-eval evaluation (docs/method.md §9): toy + hub-schema fixtures, both scorings, offline, CLI.

Models are tiny random Llamas with a word-level tokenizer built here; "biased" variants add a large constant
to chosen logits (a forward hook on lm_head), so the expected accuracies can be counted by hand.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import pat_lite.evaluation.lmeval as evaluation
from pat_lite import cli
from pat_lite.data.prompts import lettered_question
from pat_lite.evaluation import paper_tasks
from pat_lite.evaluation.paper_tasks import INVALID, PAPER14, first_valid_letter, paper_prompt

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
TOY_FIXTURES = FIXTURES / "toy"
HUB_FIXTURES = FIXTURES / "hub_schemas"
#: PAPER14 label → fixture file (hub schema).
FIXTURE_FILE = {
    "ARC-C": "ai2_arc", "ARC-E": "ai2_arc", "BoolQ": "boolq", "COPA": "copa", "HellaSwag": "hellaswag",
    "MMLU": "mmlu", "MultiRC": "multirc", "OpenBookQA": "openbookqa", "PIQA": "piqa", "RTE": "rte",
    "SIQA": "siqa", "WiC": "wic", "WinoGrande": "winogrande", "WSC": "wsc",
}  # fmt: skip
#: Gold letters of the fixture rows, worked out by hand from each dataset's label convention.
GOLD_LETTERS = {
    "ai2_arc": "BCAD",  # answerKey B, C, A and "4" of labels 1-5
    "boolq": "ABB",  # label 1 = true → "Yes" = A
    "copa": "ABA",
    "hellaswag": "ABD",  # labels are strings "0", "1", "3"
    "mmlu": "BACD",
    "multirc": "ABA",  # label 1 = correct → "Yes" = A
    "openbookqa": "BAD",
    "piqa": "ABA",
    "rte": "ABA",  # label 0 = entailment → "Yes" = A
    "siqa": "ACB",  # labels "1".."3"
    "wic": "BAB",  # label 1 = same sense → "Yes" = A
    "winogrande": "ABA",  # answers "1"/"2"
    "wsc": "AAB",  # label 1 = coreferent → "Yes" = A
}
#: Words of lm-eval's stock prompts for these tasks, so the fixtures' stock prompts are not all <unk>.
STOCK_WORDS = "Question Answer yes no True False Is the answer correct ? : Sentence 1 2 Passage Q A".split()


# ------------------------------------------------------------------------------------------------ fixtures
def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


#: The toy fixture families: two on the retention axis, one on the skill axis.
TOY_FAMILIES = ("city", "pet", "successor")


def _toy_test_items(family: str) -> list[dict]:
    """The fixture items lm-eval evaluates (the ``test`` split; eval_city.jsonl also holds a validation
    item whose gold is "Veldra", so counting it would change the accuracies below)."""
    return [r for r in _rows(TOY_FIXTURES / f"eval_{family}.jsonl") if r["split"] == "test"]


@pytest.fixture(scope="module")
def tokenizer():
    """Word-level tokenizer over every fixture word + the prompt templates; adds <s> like Llama's."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    pre = pre_tokenizers.Whitespace()
    texts = [paper_prompt("q", ["a"]), " ".join(STOCK_WORDS), " ".join(paper_tasks.LETTERS)]
    texts += [p.read_text(encoding="utf-8") for p in sorted(FIXTURES.rglob("*.jsonl"))]
    words = sorted({w for t in texts for w, _ in pre.pre_tokenize_str(t)})
    vocab = {w: i for i, w in enumerate(["<pad>", "<s>", "</s>", "<unk>", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def _tiny_llama(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
    )  # fmt: skip
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def model(tokenizer):
    return _tiny_llama(len(tokenizer))


@contextmanager
def biased(model, tokenizer, bias: dict[str, float]) -> Iterator[None]:
    """Add ``bias[word]`` to the logit of ``word`` at every position (all other logits untouched)."""
    vec = torch.zeros(model.config.vocab_size)
    for word, value in bias.items():
        token_id = tokenizer.convert_tokens_to_ids(word)
        assert token_id != tokenizer.unk_token_id, word
        vec[token_id] = value
    handle = model.lm_head.register_forward_hook(lambda _m, _i, out: out + vec)
    try:
        yield
    finally:
        handle.remove()


def _hub_overrides(scoring: str) -> dict[str, dict]:
    """Point every §9 task (paper: pat_*, loglik: lm-eval's stock task) at its local hub-schema fixture."""
    out = {}
    for task in PAPER14:
        name = task.paper if scoring == "paper" else task.loglik
        if name == "mmlu":  # the stock loglik MMLU is a group of 57 subject tasks: override one of them
            name = "mmlu_abstract_algebra"
        split = "test" if name.startswith("mmlu") else task.split
        data = str(HUB_FIXTURES / f"{FIXTURE_FILE[task.label]}.jsonl")
        out[name] = {
            "dataset_path": "json", "dataset_name": None, "dataset_kwargs": {"data_files": {split: data}},
            "training_split": None, "fewshot_split": None,  # the fixtures hold the evaluated split only
            "validation_split": split if split == "validation" else None,
            "test_split": split if split == "test" else None,
        }  # fmt: skip
    return out


# ------------------------------------------------------------------------------------ protocol, no lm-eval
def test_first_valid_letter_skips_capitals_that_are_not_labels():
    assert first_valid_letter("B", 4) == "B"
    assert first_valid_letter("The answer is (C).", 4) == "C"  # T is a capital but not a label
    assert first_valid_letter("Answer: D", 4) == "A"  # the first valid capital wins, as in §9
    assert first_valid_letter("E", 4) == INVALID
    assert first_valid_letter("E", 5) == "E"
    assert first_valid_letter("c) b", 4) == INVALID  # lower case never counts
    assert first_valid_letter("Zzz ... B", 2) == "B"


def test_paper_prompt_is_the_spec_alpaca_template_and_the_tuning_format():
    prompt = paper_prompt("Where does Alba Korin live?", ["Veldra", "Ostrin"])
    assert prompt == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\nWhere does Alba Korin live?\nA. Veldra\nB. Ostrin\nAnswer with the "
        "letter.\n\n### Response:\n"
    )
    data = pytest.importorskip("pat_lite.data.instructions")
    question, choices = "What pet does X own?", ["cat", "dog", "goat", "horse"]
    # the lettered toy instructions the model is tuned on, in the training prompt → same text
    assert paper_prompt(question, choices) == data.format_prompt(lettered_question(question, choices))


@pytest.mark.parametrize("task", PAPER14, ids=[t.label for t in PAPER14])
def test_normalisers_read_each_hub_schema(task):
    import datasets
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = load_yaml(paper_tasks.TASKS_DIR / f"{task.paper}.yaml", resolve_func=True)
    assert (cfg["dataset_path"], cfg["dataset_name"]) == (task.dataset_path, task.dataset_name)
    assert cfg[f"{task.split}_split"] == task.split
    fixture = FIXTURE_FILE[task.label]
    docs = cfg["process_docs"](datasets.Dataset.from_list(_rows(HUB_FIXTURES / f"{fixture}.jsonl")))
    letters = "".join(cfg["doc_to_target"](d) for d in docs)
    assert letters == GOLD_LETTERS[fixture]
    for doc in docs:
        text = cfg["doc_to_text"](doc)
        assert text.endswith("Answer with the letter.\n\n### Response:\n")
        assert f"\n{paper_tasks.LETTERS[len(doc['pat_choices']) - 1]}. " in text


def test_normaliser_texts_for_two_schemas():
    arc = paper_tasks.process_arc.row_fn(_rows(HUB_FIXTURES / "ai2_arc.jsonl")[3])
    assert arc == ("Which tool measures mass?", ["ruler", "thermometer", "clock", "balance", "compass"], 3)
    hs = paper_tasks.process_hellaswag.row_fn(_rows(HUB_FIXTURES / "hellaswag.jsonl")[0])
    assert hs[0].startswith("Baking cookies: A woman mixes flour and sugar in a bowl. She\n")
    assert hs[1][1] == "drives a car. fast."  # lm-eval's "[title]" clean-up
    wsc = paper_tasks.process_wsc.row_fn(_rows(HUB_FIXTURES / "wsc.jsonl")[2])
    assert wsc[0].endswith('does the pronoun "they" refer to "city councilmen"?') and wsc[2] == 1


def test_paper14_maps_to_registered_lm_eval_tasks_on_the_same_datasets():
    from lm_eval.tasks._yaml_loader import load_yaml

    tm = evaluation._task_manager(True)
    assert {t.loglik for t in PAPER14} <= set(tm.all_tasks)
    assert {t.paper for t in PAPER14} == set(tm.task_index["pat_paper14"].tags)
    for task in PAPER14:
        if task.loglik == "mmlu":
            continue  # a group of per-subject configs of the same cais/mmlu
        stock = load_yaml(tm.task_index[task.loglik].yaml_path, resolve_func=False)
        assert (stock["dataset_path"], stock.get("dataset_name")) == (task.dataset_path, task.dataset_name)


def test_markdown_for_paper14_shows_the_reported_averages(tmp_path):
    results = {
        "task_set": "paper14", "scoring": "paper", "model": "m", "limit": None, "n_tasks": 2, "average": 0.5,
        "tasks": {
            "pat_boolq": {"label": "BoolQ", "acc": 0.25, "acc_stderr": 0.1, "n": 4, "metric": "acc,x"},
            "pat_copa": {"label": "COPA", "acc": 0.75, "acc_stderr": None, "n": 4, "metric": "acc,x"},
        },
    }  # fmt: skip
    md = evaluation.to_markdown(results)
    assert "| BoolQ | `pat_boolq` | 4 | 25.00 | 10.00 |" in md
    assert "| **average** (2 tasks) | | | **50.00** | |" in md
    assert "| Llama2-7B | 58.76 | 61.04 | 60.02 | 57.81 |" in md and "not comparable" not in md
    assert "not comparable" in evaluation.to_markdown({**results, "scoring": "loglik"})
    json_path, md_path = evaluation.write_results(results, tmp_path)
    assert json.loads(json_path.read_text())["average"] == 0.5 and md_path.read_text() == md


# ------------------------------------------------------------------------------------- toy sets, lm-eval
def test_toy_loglik_equals_the_plain_torch_scorer(model, tokenizer):
    mc = pytest.importorskip("pat_lite.evaluation.mc")
    res = evaluation.evaluate(model, tokenizer, tasks="toy", toy_dir=TOY_FIXTURES, log_samples=True)
    assert res["task_set"] == "toy" and list(res["tasks"]) == [f"toy_{f}" for f in TOY_FAMILIES]
    for fam in TOY_FAMILIES:
        items = _toy_test_items(fam)
        ref = mc.multiple_choice_accuracy(model, tokenizer, items)
        assert res["tasks"][f"toy_{fam}"]["acc"] == ref["accuracy"]
        assert res["tasks"][f"toy_{fam}"]["n"] == len(items)
        lps = mc.choice_logprobs(model, tokenizer, items)
        for sample in res["samples"][f"toy_{fam}"]:
            got = [r[0] for r in sample["filtered_resps"]]
            assert got == pytest.approx(lps[sample["doc_id"]], abs=1e-4)
    assert res["average"] == pytest.approx(sum(t["acc"] for t in res["tasks"].values()) / 3)
    fast = mc.toy_scores(model, tokenizer, items=[it for fam in TOY_FAMILIES for it in _toy_test_items(fam)])
    assert 100 * res["axes"]["retention"] == pytest.approx(fast["retention"])
    assert 100 * res["axes"]["skill"] == pytest.approx(fast["skill"])


def test_toy_loglik_exact_with_controlled_logits(model, tokenizer):
    # every city item offers "Veldra", every pet item "cat", every successor item "kira": a huge logit bias
    # makes them the prediction. city gold (test split): Veldra, Pamok, Veldra, Pamok, Pamok → 2/5 (the
    # validation item, gold Veldra, is not evaluated); pet: only item 3 has gold "cat" → 1/5; successor:
    # only item 0 has gold "kira" → 1/4.
    with biased(model, tokenizer, {"Veldra": 60.0, "cat": 60.0, "kira": 60.0}):
        res = evaluation.evaluate(model, tokenizer, tasks="toy", toy_dir=TOY_FIXTURES)
    assert res["tasks"]["toy_city"]["acc"] == pytest.approx(2 / 5)
    assert res["tasks"]["toy_pet"]["acc"] == pytest.approx(1 / 5)
    assert res["tasks"]["toy_successor"]["acc"] == pytest.approx(1 / 4)
    assert res["average"] == pytest.approx((0.4 + 0.2 + 0.25) / 3)
    assert res["axes"] == pytest.approx({"retention": 3 / 10, "skill": 1 / 4})
    assert res["tasks"]["toy_city"]["acc_stderr"] == pytest.approx((0.4 * 0.6 / 4) ** 0.5)


def test_toy_paper_protocol_exact_with_controlled_logits(model, tokenizer, tmp_path):
    # the model always says "C": city golds A B C D C → 2/5, pet golds D A C C B → 2/5,
    # successor A C D B → 1/4
    with biased(model, tokenizer, {"C": 60.0}):
        res = evaluation.evaluate(
            model,
            tokenizer,
            tasks="toy",
            scoring="paper",
            toy_dir=TOY_FIXTURES,
            max_gen_toks=2,
            out_dir=tmp_path,
        )
    assert {k: v["acc"] for k, v in res["tasks"].items()} == {
        "toy_city_paper": 0.4, "toy_pet_paper": 0.4, "toy_successor_paper": 0.25
    }  # fmt: skip
    assert res["tasks"]["toy_city_paper"]["metric"] == "acc,first_letter"
    saved = json.loads((tmp_path / "eval_toy_paper.json").read_text())
    markdown = (tmp_path / "eval_toy_paper.md").read_text()
    assert saved["average"] == pytest.approx(0.35) and saved["axes"] == pytest.approx(
        {"retention": 0.4, "skill": 0.25}
    )
    assert "| city | `toy_city_paper` | 5 | 40.00 |" in markdown
    assert "| **skill** (axis, item-weighted) | | | **25.00** | |" in markdown
    # "E" is not a label of a 4-choice question: "E E ..." → invalid → 0, even though "C" is next best
    with biased(model, tokenizer, {"E": 80.0, "C": 60.0}):
        res = evaluation.evaluate(
            model, tokenizer, tasks="toy", scoring="paper", toy_dir=TOY_FIXTURES, max_gen_toks=2
        )
    assert res["average"] == 0.0


def test_toy_paper_protocol_equals_a_plain_generate_reference(model, tokenizer):
    res = evaluation.evaluate(
        model, tokenizer, tasks="toy", scoring="paper", toy_dir=TOY_FIXTURES, batch_size=1, max_gen_toks=4,
        log_samples=True,
    )  # fmt: skip
    for fam in TOY_FAMILIES:
        items = _toy_test_items(fam)
        letters = []
        for item in items:
            enc = tokenizer(paper_prompt(item["question"], item["choices"]), return_tensors="pt")
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=4, do_sample=False, pad_token_id=0)
            text = tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            text = text.split("###")[0].split("\n\n")[0]  # the YAML's stop sequences
            letters.append(first_valid_letter(text, len(item["choices"])))
        samples = sorted(res["samples"][f"toy_{fam}_paper"], key=lambda s: s["doc_id"])
        assert [s["filtered_resps"][0] for s in samples] == letters
        expected = sum(lt == "ABCD"[it["answer"]] for lt, it in zip(letters, items, strict=True)) / len(items)
        assert res["tasks"][f"toy_{fam}_paper"]["acc"] == pytest.approx(expected)


# ---------------------------------------------------------------------------------- hub-schema fixtures
def test_paper_protocol_on_every_hub_schema(model, tokenizer):
    # the model always answers "A": accuracy = share of gold "A" among the fixture rows
    names = [t.paper for t in PAPER14]
    with biased(model, tokenizer, {"A": 60.0}):
        res = evaluation.evaluate(
            model,
            tokenizer,
            tasks=names,
            scoring="paper",
            task_overrides=_hub_overrides("paper"),
            max_gen_toks=2,
        )
    for task in PAPER14:
        gold = GOLD_LETTERS[FIXTURE_FILE[task.label]]
        got = res["tasks"][task.paper]
        assert (got["label"], got["n"]) == (task.label, len(gold))
        assert got["acc"] == pytest.approx(gold.count("A") / len(gold)), task.label


@pytest.mark.slow
def test_loglik_stock_tasks_read_the_hub_schema_fixtures(model, tokenizer):
    overrides = _hub_overrides("loglik")
    with biased(model, tokenizer, {"yes": 60.0}):  # BoolQ / WiC / WSC choices are ["no", "yes"]
        res = evaluation.evaluate(model, tokenizer, tasks=list(overrides), task_overrides=overrides)
    for name, cfg in overrides.items():
        (path,) = cfg["dataset_kwargs"]["data_files"].values()
        assert res["tasks"][name]["n"] == len(_rows(Path(path))), name
        assert 0.0 <= res["tasks"][name]["acc"] <= 1.0
    # "yes" wins ⇔ label 1: boolq labels 1 0 0, wic 0 1 0, wsc 1 1 0
    assert [res["tasks"][t]["acc"] for t in ("boolq", "wic", "wsc")] == pytest.approx([1 / 3, 1 / 3, 2 / 3])


def test_offline_paper14_is_one_error_before_any_model_work():
    if os.environ.get("HF_DATASETS_OFFLINE") != "1":
        pytest.skip("only meaningful offline")
    try:
        import datasets

        datasets.load_dataset_builder("allenai/ai2_arc", "ARC-Easy")
        pytest.skip("the hub datasets are cached here")
    except Exception:
        pass
    for scoring in ("paper", "loglik"):
        # a model path that does not exist: the data error must come first
        with pytest.raises(evaluation.EvaluationDataUnavailable) as err:
            evaluation.evaluate("/nonexistent/checkpoint", tasks="paper14", scoring=scoring)
        msg = str(err.value)
        for task in PAPER14:
            assert task.dataset_path in msg
        assert "datasets.load_dataset('allenai/ai2_arc'" in msg and "HF_HUB_OFFLINE=0" in msg
        assert isinstance(err.value, RuntimeError)
    assert len({t for t, _, _ in err.value.missing}) == 13 + 57  # loglik: 13 tasks + MMLU's 57 subjects


def test_the_missing_datasets_error_has_a_one_sentence_summary_for_a_page():
    missing = [("pat_arc_easy", "allenai/ai2_arc", "ARC-Easy"), ("pat_piqa", "baber/piqa", None),
               ("pat_arc_challenge", "allenai/ai2_arc", "ARC-Challenge")]  # fmt: skip
    err = evaluation.EvaluationDataUnavailable(missing)
    assert len(str(err).splitlines()) > 5  # the full message lists the datasets and how to fetch them
    assert "\n" not in err.summary and err.summary.startswith("3 evaluation task(s) need 2 hub dataset(s)")


def test_outside_a_git_checkout_lm_evals_commit_lookup_leaves_no_fatal_on_the_terminal(
    tmp_path, monkeypatch, capfd
):
    """lm-eval runs `git describe` for its results; outside a checkout (a zip download) git's "fatal: not a
    git repository" went to the terminal, or a notebook's page, once per evaluation."""
    import shutil

    import lm_eval.evaluator

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # tmp_path lies in no repository
    original = lm_eval.evaluator.get_git_commit_hash
    original()
    assert "fatal: not a git repository" in capfd.readouterr().err  # what the page used to show
    with evaluation._quiet_git_hash():
        assert lm_eval.evaluator.get_git_commit_hash() is None
    assert capfd.readouterr().err == ""
    assert lm_eval.evaluator.get_git_commit_hash is original  # put back after the evaluation


# ------------------------------------------------------------------------------- checkpoints and the CLI
def test_committed_toy_yamls_match_data_toy(tmp_path):
    real = REPO / "data" / "toy"
    if not paper_tasks.toy_families(real):
        pytest.skip("data/toy not generated yet")
    written = paper_tasks.write_toy_task_yamls(toy_dir=real, tasks_dir=tmp_path)
    committed = sorted(paper_tasks.TASKS_DIR.glob("toy_*.yaml"))
    assert [p.name for p in written] == [p.name for p in committed], (
        "run: python -m pat_lite.evaluation.paper_tasks"
    )
    assert all(a.read_text() == b.read_text() for a, b in zip(written, committed, strict=True))
    # the stock lm-eval CLI can run one axis: --tasks toy_skill (or toy_retention, and *_paper)
    tags = evaluation._task_manager(False).task_index
    axes = paper_tasks.toy_axes(real)
    for axis in ("retention", "skill"):
        assert set(tags[f"toy_{axis}"].tags) == {f"toy_{f}" for f, a in axes.items() if a == axis}
        assert set(tags[f"toy_{axis}_paper"].tags) == {f"toy_{f}_paper" for f, a in axes.items() if a == axis}


@pytest.fixture(scope="module")
def merged_checkpoint(model, tokenizer, tmp_path_factory):
    """A PAT-merged (hidden 64 → 48) dense checkpoint."""
    try:
        from pat_lite.core.attach import attach_pat
        from pat_lite.core.config import PATConfig
        from pat_lite.core.merge import merge_pat

        base = _tiny_llama(len(tokenizer), seed=1)
        merged = merge_pat(attach_pat(base, PATConfig(target_width=48)).eval())
        assert merged.config.hidden_size == 48
    except ImportError:
        merged = model
    path = tmp_path_factory.mktemp("ckpt") / "merged"
    merged.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return merged, path


@pytest.mark.slow
def test_stock_lm_eval_cli_scores_the_merged_checkpoint_like_the_python_path(
    merged_checkpoint, tokenizer, tmp_path
):
    merged, path = merged_checkpoint
    py_mem = {
        s: evaluation.evaluate(
            merged, tokenizer, tasks="toy", scoring=s, toy_dir=TOY_FIXTURES, log_samples=True
        )
        for s in ("loglik", "paper")
    }
    py_dir = evaluation.evaluate(path, tasks="toy", scoring="loglik", toy_dir=TOY_FIXTURES)
    assert py_dir["tasks"] == py_mem["loglik"]["tasks"]
    cwd = tmp_path / "elsewhere"  # the YAMLs must not depend on the working directory
    cwd.mkdir()
    cmd = [
        sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={path}",
        "--tasks", "toy_city,toy_pet,toy_city_paper,toy_pet_paper",
        "--include_path", str(paper_tasks.TASKS_DIR),
        "--device", "cpu", "--batch_size", "8", "--output_path", str(tmp_path / "out"), "--log_samples",
    ]  # fmt: skip
    env = {**os.environ, "PAT_TOY_DIR": str(TOY_FIXTURES)}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (results_file,) = glob.glob(str(tmp_path / "out" / "**" / "results_*.json"), recursive=True)
    cli = json.loads(Path(results_file).read_text())["results"]
    for scoring, py in py_mem.items():
        # the stock CLI runs the families that have a task YAML (the fixture's skill family has none)
        compared = {name: task for name, task in py["tasks"].items() if name.split("_")[1] in ("city", "pet")}
        assert len(compared) == 2, sorted(py["tasks"])
        for name, task in compared.items():
            assert cli[name][task["metric"]] == pytest.approx(task["acc"]), name
            (samples_file,) = glob.glob(str(Path(results_file).parent / f"samples_{name}_[0-9]*.jsonl"))
            cli_samples = sorted(_rows(Path(samples_file)), key=lambda s: s["doc_id"])
            ours = sorted(py["samples"][name], key=lambda s: s["doc_id"])
            if scoring == "loglik":  # per-choice log-likelihoods, not just the accuracy
                got = [float(r[0]) for s in cli_samples for r in s["filtered_resps"]]
                assert got == pytest.approx([r[0] for s in ours for r in s["filtered_resps"]], abs=1e-4)
            else:
                assert [s["filtered_resps"] for s in cli_samples] == [s["filtered_resps"] for s in ours]


@pytest.mark.slow
def test_pat_lite_eval_subcommand_writes_json_and_markdown(merged_checkpoint, tmp_path, capsys):
    _, path = merged_checkpoint
    rc = cli.main(
        ["eval", str(path), "--tasks", "toy", "--toy-dir", str(TOY_FIXTURES), "--limit", "3",
         "--max-gen-toks", "2", "--out-dir", str(tmp_path)]
    )  # fmt: skip
    assert rc == 0
    for scoring in ("loglik", "paper"):
        saved = json.loads((tmp_path / f"eval_toy_{scoring}.json").read_text())
        assert saved["limit"] == 3 and all(t["n"] == 3 for t in saved["tasks"].values())
    assert "| **average** (3 tasks) |" in capsys.readouterr().out


def test_the_heldout_loss_is_the_mean_next_token_loss_within_the_budget():
    from tiny_models import tiny_model, word_tokenizer

    from pat_lite.evaluation.heldout_loss import heldout_loss

    model, tokenizer = tiny_model("llama-gqa"), word_tokenizer()
    texts = ["the cat sat on the mat today", "a dog ran far", "one two three four five six seven eight"]
    with torch.no_grad():  # each text alone, scored by the model's own loss (mean over predicted tokens)
        per_text = []
        for text in texts:
            ids = tokenizer(text, return_tensors="pt")["input_ids"]
            per_text.append((model(input_ids=ids, labels=ids).loss.item(), ids.shape[1] - 1))
    total = sum(loss * n for loss, n in per_text) / sum(n for _, n in per_text)
    assert heldout_loss(model, tokenizer, texts, token_budget=10_000) == pytest.approx(total, rel=1e-5)
    first = per_text[0]
    assert heldout_loss(model, tokenizer, texts, token_budget=first[1]) == pytest.approx(first[0], rel=1e-5)
