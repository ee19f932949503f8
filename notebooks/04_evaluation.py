# ---
# jupyter:
#   jupytext:
#     notebook_metadata_filter: kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 — Evaluation: dense vs LoRA vs PAT, accuracy and speed
#
# Three models, one evaluation:
#
# - **dense**: the base model, untuned (full width $d$);
# - **LoRA**: the paper's baseline — LoRA-tuned on the same data and steps, merged, full width;
# - **PAT**: LoRA + PAT at 25 %, merged into the narrower model ($d' = 0.75\,d$).
#
# Accuracy comes from **lm-evaluation-harness** with two scorings:
#
# - `loglik` — lm-eval's standard multiple choice: the choice with the highest log-likelihood wins;
# - `paper` — the paper's protocol (docs/method.md §9): the question with lettered choices in the Alpaca
#   template, a short greedy generation, scored by the first valid capital letter (OpenCompass style).
#
# `tasks="paper14"` runs the paper's 14 tasks (needs their hub datasets); offline, the notebook prints what
# is missing and uses the embedded toy sets (held-out facts and skills of the tiny model's invented world).
# Then a benchmark measures what the narrower width buys in speed, and the committed study (`results/`)
# shows dense, LoRA, PAT and the prune→tune baselines on the real model, SmolLM2-135M, evaluated on held-out
# real English through the same lm-eval path (`pat-lite eval --tasks realtext`), beside the paper.

# %% tags=["parameters"]
base_model = "tiny"  # "tiny" (embedded) or a hub name / local folder
train_config = "tiny"  # recipe in configs/ for the LoRA and PAT runs
max_steps = 300
lora_run_dir = None  # reuse a finished LoRA run folder (holding merged/) instead of training
pat_run_dir = None  # reuse a finished PAT run folder
tasks = "paper14"  # "paper14" or "toy"
scorings = ["loglik", "paper"]
limit = None  # documents per task (None: all)
eval_batch_size = 16
bench_model = "tinyllama"  # preset of pat_lite.bench.common.PRESETS, or a dict of LlamaConfig fields
bench_num_layers = 4  # shorten the benchmark model (None: all layers)
bench_batch_sizes = [1, 4, 16]
bench_dtypes = ["float32"]
bench_context = 128
bench_repeats = 3
bench_warmup = 1  # untimed runs per model and batch size before the timed repeats
bench_threads = None  # torch threads for the benchmark (None: torch's default)
bench_memory = True
output_dir = "artifacts/nb04"

# %%
import json
import time
from pathlib import Path

from IPython.display import Image, Markdown, display
from transformers import LlamaConfig

from pat_lite.bench.common import write_csv
from pat_lite.bench.inference import COLUMNS, run_benchmark
from pat_lite.bench.report import plot_benchmark
from pat_lite.evaluation.lmeval import (
    EvaluationDataUnavailable,
    check_datasets_available,
    evaluate,
    resolve_tasks,
    to_markdown,
)
from pat_lite.evaluation.paper_results import TTFT_SPEEDUP
from pat_lite.notebook import evaluation as report
from pat_lite.notebook.page import setup
from pat_lite.notebook.plots import mask_outcome, quiet_mask_count_warning
from pat_lite.training.run import pat_train
from pat_lite.utils.numbers import readable

OUT = setup(output_dir)

# %% [markdown]
# ## The three models
#
# LoRA and PAT are tuned with the same recipe and steps (or taken from existing run folders). Each run folder
# holds `merged/`, an ordinary checkpoint that lm-eval loads like any Hugging Face model.

# %%
from pat_lite.models.loading import checkpoint_path

dense_dir = checkpoint_path(base_model)  # "tiny" is shipped with pat_lite; a hub name stays as it is

run_dirs = {"lora": lora_run_dir, "pat": pat_run_dir}
for method in [m for m, given in run_dirs.items() if not given]:
    start = time.time()
    settings = {
        "model": base_model,
        "method": method,
        "output_dir": str(OUT / method),
        "max_steps": max_steps,
    }
    with quiet_mask_count_warning():  # said as a sentence below when the count is off
        result = pat_train(
            train_config, progress=False, overwrite_output_dir=True, report_to="none", **settings
        )
    run_dirs[method] = str(result.output_dir)
    print(f"{method}: {result.summary['steps']} steps in {time.time() - start:.0f} s -> {result.output_dir}")
    print("   ", mask_outcome(result.summary))
    del result

# %% [markdown]
# The three checkpoints lm-eval will load, and their hidden sizes:

# %%
models = {"dense": dense_dir, "LoRA": f"{run_dirs['lora']}/merged", "PAT": f"{run_dirs['pat']}/merged"}
for name, path in models.items():
    config = json.loads((Path(path) / "config.json").read_text()) if Path(path).is_dir() else {}
    print(f"{name:6s} hidden size {config.get('hidden_size', '?'):>5}  {path}")

# %% [markdown]
# ## Accuracy with lm-eval
#
# The datasets are checked before any model work; the paper scoring goes first, since its check needs only
# this project's task YAMLs while lm-eval's full task index (for `loglik`) takes a while to build. The cell
# prints each model's average as its evaluation finishes, then the report `pat_lite.evaluation.lmeval` writes
# for PAT: per task the number of documents, the accuracy and its standard error.

# %%
task_set = tasks
try:
    if task_set != "toy":
        for scoring in sorted(scorings, key=lambda s: s != "paper"):
            check_datasets_available(resolve_tasks(task_set, scoring)[1])
except EvaluationDataUnavailable as err:
    print(f"NOTE: {err.summary}.\n-> evaluating on the embedded toy sets instead.")
    task_set = "toy"

results = {}
for scoring in scorings:
    for name, path in models.items():
        start = time.time()
        res = evaluate(
            path, tasks=task_set, scoring=scoring, limit=limit, batch_size=eval_batch_size,
            out_dir=OUT / "eval" / name, log_samples=True,
        )  # fmt: skip
        results[name, scoring] = res
        print(f"{scoring:6s} {name:6s} average {100 * res['average']:5.1f} % ({time.time() - start:.0f} s)")
display(Markdown(to_markdown(results["PAT", scorings[0]])))

# %% [markdown]
# Accuracy (%) per task and the unweighted average (as the paper averages its 14 tasks). The dashed marks are
# chance: the accuracy of a uniform guess among each question's choices.

# %%
table = report.accuracy_table(results)
table.to_csv(OUT / "accuracy.csv")
display(table.round(1))
chance = report.chance_levels(results["dense", "loglik"]) if "loglik" in scorings else None
fig = report.plot_accuracy(table, chance, title=f"{task_set} tasks, {limit or 'all'} documents per task")
fig.savefig(OUT / "accuracy.png")
display(fig)

# %% [markdown]
# ### Why the paper's scoring can fall below chance
#
# The paper's protocol assumes a model that **answers with a letter**: it reads the first capital letter
# among the valid labels (A, B, C, ...) in the generated text. An instruction-tuned 7B model replies "B" or
# "B. Paris"; a small model that never learned the lettered format replies with a sentence, and the protocol
# then picks whatever valid capital letter that sentence happens to contain — the "B" of a name — or finds
# none and counts the answer as **wrong** (an invalid answer is not a guess). So accuracy can sit far below
# chance, for the dense model as well, even when log-likelihood scoring shows it knows every fact. The toy
# tuning data contain lettered questions too, so LoRA and PAT can learn the form given enough steps. Below:
# how often each model answered in the letter form, and a few of the dense model's answers.

# %%
if "paper" in scorings:
    for name in models:
        rate = report.letter_answer_rate(results[name, "paper"])
        print(f"{name:6s} answered with a letter in {rate:5.1f} % of the questions")
    display(report.paper_answer_examples(results["dense", "paper"], n=2))

# %% [markdown]
# ## Beside the paper
#
# The paper's 14-task averages (§9; scored by generated letter) for LoRA-64 at full width and PAT at 20, 25
# and 30 %. The paper's claim is that PAT at 20-25 % keeps (even slightly beats) the accuracy of full-width
# LoRA. Our numbers come from a different model and task set (unless `tasks="paper14"` ran on a real model),
# so compare **the ratio PAT / LoRA**, not the absolute values — and only where LoRA is above chance: a
# ratio of two guesses (or of two invalid-answer rates) measures nothing.

# %%
display(report.paper_reported_table())
label = f"{'tiny' if base_model == 'tiny' else base_model} ({task_set})"
compare = report.paper_comparison(results, label, chance=chance["average"] if chance else None)
display(compare.style.format(precision=3, na_rep="–"))
fig = report.plot_paper_comparison(compare)
fig.savefig(OUT / "paper_vs_ours.png")
display(fig)

# %% [markdown]
# ## Speed
#
# A narrower model does less work: nearly every matrix multiplication has $d$ on one side, so prefill FLOPs
# and the bytes read per decoded token shrink by almost $d/d' = 1.33$ at 25 %. The paper measured **1.33×**
# faster time to first token (128-token context) for the pruned Llama-2 models. `pat_lite.bench.inference`
# times a dense model against its narrower version with random weights (speed does not depend on the
# values), interleaved and after warm-up runs. The table sets each measured speed-up (a ratio of CPU time
# against the dense model) beside two ideals computed from the shapes: one that counts only the matrix
# products and weight reads the cut shrinks, and one that also counts what it does not shrink (attention's
# inner width, the KV cache, the fixed cost of every step), with the share of that ideal reached.

# %%
bench_config = LlamaConfig(**bench_model) if isinstance(bench_model, dict) else bench_model
rows = run_benchmark(
    bench_config,
    ratio=0.25,
    alignment=None if isinstance(bench_model, dict) else 64,  # a preset's pruned width: a multiple of 64
    compare_unaligned=False,
    batch_sizes=bench_batch_sizes,
    dtypes=bench_dtypes,
    context=bench_context,
    repeats=bench_repeats,
    warmup=bench_warmup,
    threads=bench_threads,
    num_layers=bench_num_layers,
    memory=bench_memory,
)
display(report.benchmark_table(rows))
write_csv(rows, OUT / "bench.csv", COLUMNS)
display(Markdown(report.timing_grade_note(rows)))

# %%
display(Image(filename=str(plot_benchmark(rows, OUT / "bench.png"))))

# %% [markdown]
# The ideal speedups of the paper's models, from their shapes alone (prefill: FLOP ratio; decode: ratio of
# the bytes read per token), and their parameter counts in billions:

# %%
display(report.ideal_speedup_table().round(3))
print(f"paper: {TTFT_SPEEDUP}x faster time to first token, pruned Llama-2 models (A100, 128-token context)")

# %% [markdown]
# ## The committed study, beside the paper's Table 1
#
# Everything above is one run of each model. `results/` holds the study behind this project's claims
# (`pat-lite reproduce`; docs/method.md §9-§10): every method on the same data, steps and LoRA, three
# seeds on the toy world; on SmolLM2 each method's learning rate (`lr`) is the better of two on validation
# text, never the test. Re-run it with the command printed at the top of `results/<suite>.md`. Here:
# SmolLM2-135M tuned on real English, evaluated on held-out text (perplexity: lower is better; cloze: 4
# choices, a guess scores 25 %); rows marked *(ours)* are this project's variants of PAT, not the paper's.

# %%
from pat_lite.reproduce.results_view import beside_paper, load_results, main_table

committed = {suite: load_results(suite, "results") for suite in ("toy", "smollm2")}
display(main_table(committed["smollm2"]))

# %% [markdown]
# The paper's Llama2-7B averages at 25 % beside our means (toy: the average of retention and skill, %,
# mean over three seeds). The paper's numbers and ours are different models and tasks: compare the order
# of the methods, not the values.

# %%
side = beside_paper(committed)
display(side.style.format(readable).format("{:.2f}", subset=["paper, Llama2-7B (%)"]))  # the paper's digits

# %% [markdown]
# **Reading.** In the committed SmolLM2 study (the table above is the 100-step sweep point: one seed, each
# method at the learning rate its validation perplexity picks; notebook 05 follows the methods to 300 and
# 1,000 steps; `results/smollm2.md` holds all 47 rows) the paper's claim does not hold: PAT
# beats pruning by writer norm before or after tuning (perplexity 3,846 against 31,575 and 529,748 at 100
# steps; 1,854 ± 1,164 against 5,545 ± 418 at 300), but the SliceGPT-style PCA slice followed by the same
# LoRA keeps the model far better (202.3 at 100 steps, 168.0 ± 0.5 over three seeds at 300; cloze 84.2 %
# against PAT's 69.9 % at 300).
# On the toy world (three seeds) PAT is level with the norm prune→tune (67.6 ± 0.5 % against 68.4 ± 1.0 %)
# and both PCA methods lead (86-88 %). Notebook 05 separates the choice from the tuning: PAT's mask on the
# untuned base is no better than a random one on the toy and worse than the energy or PCA cut on SmolLM2,
# and the tuned order follows the cut's quality. The paper's Llama2-7B column orders the same methods the
# other way round after 23,438 steps by the paper's text (about 30,000 in its released recipe); our runs
# are 100 to 1,000 steps long on SmolLM2, 300 and 600 on the toy.
