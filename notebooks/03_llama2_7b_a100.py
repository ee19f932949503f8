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
# # 03 — The paper's recipe: Llama-2-7B at 25 % on one A100
#
# This notebook runs PAT exactly as the paper trained Llama-2-7B (docs/method.md §7), sized for **one
# A100-80GB** instead of eight GPUs: the global batch of 128 comes from 8 sequences × 16 accumulation steps.
# The hidden size goes from 4096 to **3072**; attention and FFN widths stay.
#
# | setting | value |
# |---|---|
# | data | LaMini-instruction, random 50 % (~1.3 M rows), Alpaca template, 256 tokens |
# | schedule | 3 epochs, lr 5e-5 cosine, 100 warm-up steps, batch 128, AdamW, max grad norm 0.3, bf16 |
# | LoRA | r 20, alpha 4, dropout 0.05, every linear layer except `lm_head` |
# | PAT | $N_\text{target}$ = 3072, HIO rank 200, $s_0$ = 1/3 of the steps, mask lr: `mask_lr_multiplier` |
#
# It checks the hardware first and states the expected time and memory. With the smoke parameters
# (`notebooks/smoke.yaml`), or without a suitable GPU or the weights, every cell runs on the embedded tiny
# model instead, so the notebook itself is tested on CPU.

# %% tags=["parameters"]
model_name_or_path = "meta-llama/Llama-2-7b-hf"  # hub name (needs access) or a local folder; "tiny"
config_name = "llama2-7b-a100"  # the recipe in configs/
max_steps = None  # None: the full recipe (3 epochs); e.g. 500 for a shorter run
extra_settings = {}  # more recipe settings, e.g. {"optim": "paged_adamw_32bit"} (needs bitsandbytes)
min_gpu_memory_gib = 70  # below this the 7B recipe is not attempted
tiny_max_steps = 300  # steps of the tiny-model fallback
prompt = None
output_dir = "artifacts/nb03"

# %%
import contextlib
import json
import os
import time

import pandas as pd
import torch
import yaml
from IPython.display import display
from transformers import AutoModelForCausalLM, AutoTokenizer

from pat_lite.data.instructions import DatasetUnavailableError, format_prompt
from pat_lite.models.loading import ModelUnavailableError
from pat_lite.notebook.page import setup
from pat_lite.notebook.plots import mask_outcome, plot_training_log, quiet_mask_count_warning
from pat_lite.resources import configs_dir
from pat_lite.training.config import load_train_config
from pat_lite.training.run import train

OUT = setup(output_dir)

# %% [markdown]
# ## Hardware check

# %%
gib = 2**30
hardware = {
    "torch": torch.__version__,
    "cuda available": torch.cuda.is_available(),
    "cpu cores": os.cpu_count(),
}
with contextlib.suppress(ValueError, OSError, AttributeError):
    hardware["RAM (GiB)"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / gib, 1)
gpu_memory = 0.0
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    gpu_memory = props.total_memory / gib
    hardware.update(
        {
            "GPU": props.name,
            "GPU count": torch.cuda.device_count(),
            "GPU memory (GiB)": round(gpu_memory, 1),
            "bf16 supported": torch.cuda.is_bf16_supported(),
        }
    )
for key, value in hardware.items():
    print(f"{key:>18}: {value}")

# %% [markdown]
# What the recipe needs (`expected` in its YAML file), and whether this machine has it:

# %%
recipe_file = configs_dir() / f"{config_name}.yaml"
expected = yaml.safe_load(recipe_file.read_text()).get("expected", {})
print(f"\nexpected for {recipe_file.name}: time {expected.get('time')}, memory {expected.get('memory')}")
gpu_ok = torch.cuda.is_available() and gpu_memory >= min_gpu_memory_gib
if model_name_or_path != "tiny" and not gpu_ok:
    print(
        f"NOTE: the 7B recipe needs a CUDA GPU with >= {min_gpu_memory_gib} GiB "
        f"(found {f'{gpu_memory:.0f} GiB' if gpu_memory else 'none'}): using the embedded tiny model."
    )


# %% [markdown]
# ## The run configuration
#
# The recipe file is loaded with `load_train_config` and a few overrides. The number of optimizer steps
# follows from the data: ~1.29 M rows × 3 epochs / 128 per step ≈ 30 000 steps, so the mask milestone is
# $s_0 \approx 10\,000$ (the released recipe's value).


# %%
def tiny_config():
    return load_train_config(
        "tiny",
        [
            f"output_dir={OUT / 'tiny_run'}",
            "overwrite_output_dir=true",
            f"max_steps={tiny_max_steps}",
            "logging_steps=5",
            "report_to=none",
        ],
    )


use_full = model_name_or_path != "tiny" and gpu_ok
if use_full:
    overrides = [
        f"model={model_name_or_path}",
        f"output_dir={OUT / 'run'}",
        *(f"{k}={json.dumps(v)}" for k, v in extra_settings.items()),
    ]
    if max_steps:
        overrides.append(f"max_steps={max_steps}")
    cfg = load_train_config(config_name, overrides)
else:
    cfg = tiny_config()

# %% [markdown]
# The settings of the run, as `TrainConfig` holds them (the global batch is per device × accumulation ×
# devices):

# %%
batch = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * max(1, torch.cuda.device_count())
shown = (
    "model data data_fraction max_length method pat lora_r lora_alpha learning_rate mask_lr_multiplier "
    "lr_scheduler_type warmup_steps num_train_epochs max_steps per_device_train_batch_size "
    "gradient_accumulation_steps bf16 gradient_checkpointing optim"
).split()
table = pd.Series({key: getattr(cfg, key) for key in shown} | {"global batch": batch}, dtype=object)
display(table.to_frame("value"))
print("running:", "the paper's recipe" if use_full else "the embedded tiny model (configs/tiny.yaml)")
if use_full and cfg.max_steps in (-1, None):
    steps = int(1.29e6 * cfg.num_train_epochs / batch)
    print(f"about {steps:,} optimizer steps, s0 ~ {steps // 3:,}")

# %% [markdown]
# ## Train
#
# An interrupted run resumes from its last complete checkpoint when this cell is run again with the same
# settings (the Trainer keeps checkpoints every `save_steps`). If the weights or LaMini cannot be loaded
# here, the error says how to get them and the notebook falls back to the tiny model.

# %%
if torch.cuda.is_available():
    torch.cuda.reset_peak_memory_stats()
start = time.time()
with quiet_mask_count_warning():  # said as a sentence below when the count is off
    try:
        result = train(cfg)
    except (ModelUnavailableError, DatasetUnavailableError) as err:
        print(f"NOTE: {err}\n-> falling back to the embedded tiny model (configs/tiny.yaml).")
        use_full, cfg = False, tiny_config()
        result = train(cfg)
hours = (time.time() - start) / 3600
peak = torch.cuda.max_memory_allocated() / gib if torch.cuda.is_available() else None
print(
    f"model {cfg.model}: {result.summary['steps']} steps in {hours * 60:.1f} min"
    + (f", peak GPU memory {peak:.1f} GiB" if peak else "")
)
print(f"expected for the full recipe: {expected.get('time')}, {expected.get('memory')}")
print(mask_outcome(result.summary))
print(json.dumps(result.summary, indent=1))

# %%
fig = plot_training_log(result.log_history, result.summary["target_width"])
fig.savefig(OUT / "training_curves.png")
display(fig)

# %% [markdown]
# ## Merge, check, save
#
# `train` has merged the run into `run/merged/` (bf16 for the 7B model). We check the merge on one prompt and
# reload the checkpoint with plain `transformers`.

# %%
if prompt is None:
    prompt = "What is the capital of France?" if use_full else "Where does Brabam Dagi live?"
device = next(result.merged.parameters()).device
enc = result.tokenizer([format_prompt(prompt)], return_tensors="pt").to(device)
with torch.no_grad():
    tuned_logits = result.model.eval()(**enc).logits.float()
    merged_logits = result.merged.eval()(**enc).logits.float()
diff = (tuned_logits - merged_logits).abs().max().item()
print(
    f"max |logit difference| tuned vs merged: {diff:.3g} (logit range {tuned_logits.abs().max():.1f}; "
    "bf16 weights give ~1e-1, float32 ~1e-5)"
)
size = sum(f.stat().st_size for f in result.merged_dir.rglob("*") if f.is_file()) / 2**20
print(
    f"saved: {result.merged_dir} ({size:,.1f} MiB), hidden size {result.merged.config.hidden_size}, "
    f"{sum(p.numel() for p in result.merged.parameters()) / 1e6:,.1f} M parameters"
)

# %% [markdown]
# The saved folder is an ordinary checkpoint: plain `transformers` loads it and generates.

# %%
result.model = None  # free the tuned copy before reloading
if torch.cuda.is_available():
    torch.cuda.empty_cache()
reloaded = AutoModelForCausalLM.from_pretrained(result.merged_dir, dtype="auto").to(device).eval()
tok = AutoTokenizer.from_pretrained(result.merged_dir)
enc = tok(format_prompt(prompt), return_tensors="pt").to(device)
with torch.no_grad():
    out = reloaded.generate(**enc, max_new_tokens=32, do_sample=False, pad_token_id=tok.pad_token_id)
print("prompt:", prompt)
print("merged model says:", tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True))

# %% [markdown]
# ## Next
#
# Evaluate the merged checkpoint with notebook **04** (`pat_run_dir` = this run's folder) or the CLI:
#
#     python -m pat_lite.cli eval artifacts/nb03/run/merged --tasks paper14 --scoring both
#
# The paper reports a 14-task average of 60.02 for PAT at 25 % on Llama-2-7B (LoRA-64 at full width: 58.76),
# scored by generated letter (OpenCompass style).
