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
# # 02 — PAT dry run on TinyLlama-1.1B
#
# A short PAT run, end to end: tune TinyLlama-1.1B with LoRA + PAT at 25 % (hidden size 2048 → 1536), watch
# the losses and the mask, merge into the narrower model, check the merge, generate before and after, and
# reload the result with plain `transformers`.
#
# The recipe is `configs/tinyllama.yaml` (LaMini instructions, Alpaca template, LoRA r 20, HIO rank 100,
# mask milestone $s_0$ = a third of the steps). **Offline** (no cached TinyLlama), the notebook says so and
# runs the same steps on the embedded tiny model (`configs/tiny.yaml`, hidden size 128 → 96), which is
# pre-trained on a small invented world so that pruning has something to lose.
#
# Loss being minimised (docs/method.md §5):
# $\mathcal{L} = \mathcal{L}_\text{instruction} + \mathcal{L}_\text{sparse} + \mathcal{L}_\text{identity}$,
# where the instruction loss counts response tokens only.

# %% tags=["parameters"]
model_name_or_path = "TinyLlama/TinyLlama_v1.1"  # hub name or local folder; "tiny": the embedded model
config_name = "tinyllama"  # recipe in configs/ used for a real (non-tiny) model
max_steps = 200  # a dry run; the recipe's full length is in configs/tinyllama.yaml
logging_steps = 5
save_steps = 50  # checkpoints every save_steps (each holds pat_state.safetensors)
max_train_samples = None  # cap the training set (None: the recipe's)
prompt = None  # None: a question from the toy world (tiny model) or a general instruction
max_new_tokens = 40
eval_limit = None  # held-out toy questions per family in the last table (None: all 200)
output_dir = "artifacts/nb02"

# %%
import json
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from pat_lite.data.instructions import format_prompt
from pat_lite.models.loading import ModelUnavailableError, load_model_and_tokenizer
from pat_lite.study import plots
from pat_lite.study.notebook import setup
from pat_lite.training.config import load_train_config
from pat_lite.training.run import train

OUT = setup(output_dir)
device = "cuda" if torch.cuda.is_available() else "cpu"
print("torch", torch.__version__, "| device:", device)

# %% [markdown]
# ## The base model
#
# `load_model_and_tokenizer` loads a hub name, a local folder or `"tiny"`. Offline and not cached, it raises
# `ModelUnavailableError` with instructions — we catch it and fall back to the embedded tiny model.

# %%
recipe, model_used = config_name, model_name_or_path
dtype = "bfloat16" if device == "cuda" else "float32"
try:
    if model_name_or_path == "tiny":
        raise ModelUnavailableError("the embedded tiny model was asked for")
    base, tokenizer = load_model_and_tokenizer(model_name_or_path, dtype=dtype)
except ModelUnavailableError as err:
    print(f"NOTE: {err}\n")
    print("-> running this notebook on the EMBEDDED TINY MODEL (configs/tiny.yaml) instead.")
    recipe, model_used = "tiny", "tiny"
    base, tokenizer = load_model_and_tokenizer("tiny")
base = base.to(device).eval()
n_base = sum(p.numel() for p in base.parameters())
print(
    f"{model_used}: {type(base).__name__}, hidden size {base.config.hidden_size}, "
    f"{base.config.num_hidden_layers} layers, {n_base / 1e6:.2f} M parameters"
)

# %% [markdown]
# One question to ask the model before and after tuning. On the tiny model it is a fact from the toy world's
# tuning data, so the expected answer is known and printed beside the model's.

# %%
expected = None
if prompt is None and model_used == "tiny":
    from pat_lite.data.toyworld import load_toy_instructions

    record = next(r for r in load_toy_instructions() if "\n" not in r["instruction"])
    prompt, expected = record["instruction"], record["response"]
prompt = prompt or "Give three tips for staying healthy."


def generate(model, tok, text=None):
    enc = tok(format_prompt(text or prompt), return_tensors="pt").to(next(model.parameters()).device)
    with torch.no_grad():
        out = model.generate(
            **enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id
        )
    return tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip()


print("prompt:         ", prompt)
print("expected answer:", expected or "(open question)")
before_text = generate(base, tokenizer)
print("base model says:", before_text)

# %% [markdown]
# ## Training
#
# `pat_lite.training.run.train` runs the Hugging Face `Trainer` with peft LoRA on every linear layer and PAT
# attached. `MaskRecorder`, a small callback, copies the mask proxies $W_M$ after every optimizer step so that
# we can draw their histogram over time; the checkpoints hold them too (`pat_state.safetensors`).

# %%
overrides = [
    f"model={model_used}",
    f"output_dir={OUT / 'run'}",
    "overwrite_output_dir=true",
    f"max_steps={max_steps}",
    f"logging_steps={logging_steps}",
    f"save_steps={save_steps}",
    "save_total_limit=null",
    "report_to=none",
]
if max_train_samples:
    overrides.append(f"max_train_samples={max_train_samples}")
if device == "cpu":
    overrides += ["bf16=false", "dtype=float32"]
cfg = load_train_config(recipe, overrides)
shown = "model data method pat lora_r learning_rate max_steps per_device_train_batch_size".split()
print(json.dumps({key: getattr(cfg, key) for key in shown}, indent=1))
del base  # the trainer loads its own copy

# %%
recorder = plots.MaskRecorder()
start = time.time()
with plots.quiet_mask_count_warning():  # said as a sentence below when the count is off
    result = train(cfg, callbacks=[recorder])
print(f"trained {result.summary['steps']} steps in {time.time() - start:.0f} s")
print(plots.mask_outcome(result.summary))
print(json.dumps(result.summary, indent=1))

# %% [markdown]
# ## What happened during training
#
# - **Losses**: the instruction loss should fall; the sparsity loss drops once the active count reaches the
#   target; the identity loss keeps $L_0$ near-orthonormal.
# - **Active channels** $\sum_i \mathbb{1}(W_{M,i} > 0)$ start at 0 (all $W_M = 0$) and are driven to
#   the target width by the count term; $\tau$ and $\beta$ show the gate schedule.

# %%
fig = plots.plot_training_log(result.log_history, result.summary["target_width"])
fig.savefig(OUT / "training_curves.png")
display(fig)
display(pd.DataFrame(plots.training_log_rows(result.log_history)).tail())

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
# weights, every HSM into its writer, and the kept channels are sliced out. Check: the tuned model in
# evaluation mode (exact 0/1 mask) and the merged model give the same logits.

# %%
tuned, merged = result.model.eval(), result.merged.eval()
enc = result.tokenizer([format_prompt(prompt)], return_tensors="pt").to(device)
with torch.no_grad():
    logits_tuned = tuned(**enc).logits.float()
    logits_merged = merged(**enc).logits.float()
diff = (logits_tuned - logits_merged).abs().max().item()
scale = logits_tuned.abs().max().item()
print(f"max |logit difference| tuned vs merged: {diff:.2e} (logits up to {scale:.1f})")
n_merged = sum(p.numel() for p in merged.parameters())
print(
    f"hidden size {result.summary['hidden_size']} -> {merged.config.hidden_size}; "
    f"parameters {n_base / 1e6:.2f} M -> {n_merged / 1e6:.2f} M ({n_merged / n_base:.1%})"
)
assert diff <= 1e-3 * max(1.0, scale)

# %% [markdown]
# The question from above, after tuning. The masked and the merged model must say the same (same logits).
# Whether the answer is *right* depends on the run: a dry run of a few steps changes little, and a model of
# this size can confuse the people of its toy world — compare with the expected answer.

# %%
print("prompt:                ", prompt)
print("expected answer:       ", expected or "(open question)")
print("before tuning (dense)  :", before_text)
print("PAT-tuned (masked)     :", generate(tuned, result.tokenizer))
print("merged (narrower model):", generate(merged, result.tokenizer))

# %% [markdown]
# ## Reload with plain `transformers`
#
# The merged folder is an ordinary checkpoint: `AutoModelForCausalLM.from_pretrained` loads it without
# `pat_lite` (the config records the smaller `hidden_size` and an explicit `head_dim`).

# %%
reloaded = AutoModelForCausalLM.from_pretrained(result.merged_dir).to(device).eval()
reloaded_tok = AutoTokenizer.from_pretrained(result.merged_dir)
with torch.no_grad():
    logits_reloaded = reloaded(**enc).logits.float()
print(
    f"{result.merged_dir}: hidden_size {reloaded.config.hidden_size}, "
    f"max |logit difference| vs in-memory merged: {(logits_reloaded - logits_merged).abs().max():.2e}"
)
print("reloaded model says:", generate(reloaded, reloaded_tok))
print("files:", sorted(p.name for p in result.merged_dir.iterdir()))

# %% [markdown]
# On the tiny model: multiple-choice accuracy (%, log-likelihood of each of the 4 choices; a guess scores
# 25 %) on the held-out toy facts — facts about people the tuning data never mention, so they measure what
# the width cut destroyed and tuning could not restore. The dense base before tuning is the reference.

# %%
if model_used == "tiny":
    from pat_lite.data.toyworld import FAMILIES, load_toy_eval
    from pat_lite.evaluation.mc import multiple_choice_accuracy
    from pat_lite.models.tinybase import load_tiny_base

    items = [item for family in FAMILIES for item in load_toy_eval(family)[:eval_limit]]
    dense_model, dense_tok = load_tiny_base()
    models = {
        f"dense base, d = {dense_model.config.hidden_size} (%)": (dense_model, dense_tok),
        f"PAT merged, d = {reloaded.config.hidden_size} (%)": (reloaded, reloaded_tok),
    }
    table = pd.DataFrame(
        {name: multiple_choice_accuracy(*pair, items)["per_family"] for name, pair in models.items()}
    )
    table.loc["average"] = table.mean()
    print(f"{len(items)} held-out questions, {len(items) // len(FAMILIES)} per family")
    display((100 * table).round(1))
else:
    print("see notebook 04 for the lm-eval evaluation of this checkpoint:", result.merged_dir)
