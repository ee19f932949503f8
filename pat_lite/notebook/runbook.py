"""Notebook 03 as a runbook: each prerequisite of the paper's recipe checked on this machine, with a one-line
verdict, and the disk a run needs. Nothing here downloads anything: the checks read the local caches and
the machine.

A verdict is `ok` (met), `missing` (the run would fail), or `note` (cannot be known without trying, e.g. a
hub download that needs a licence): its text says what was found and, if something is missing, what to do.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pat_lite.bench.memory_plan import GIB, MemoryPlan, base_parameters

#: How a verdict starts its line.
MARKS = {True: "ok     ", False: "MISSING", None: "note   "}


@dataclass(frozen=True)
class Verdict:
    """One prerequisite: met (True), not met (False) or unknown until the run tries (None)."""

    ok: bool | None
    text: str

    def __str__(self) -> str:
        return f"{MARKS[self.ok]} {self.text}"


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0")


# ----------------------------------------------------------------------------------------- the machine
def check_cuda_torch() -> Verdict:
    """A torch built with CUDA that sees a GPU."""
    import torch

    if torch.version.cuda is None:
        return Verdict(False, f"torch {torch.__version__} is a CPU build: `make venv TORCH_CONSTRAINTS=` (or "
                              "pip's CUDA wheel of torch) installs one with CUDA")  # fmt: skip
    if not torch.cuda.is_available():
        return Verdict(False, f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU")
    return Verdict(True, f"torch {torch.__version__} with CUDA {torch.version.cuda}, "
                         f"{torch.cuda.device_count()} GPU(s)")  # fmt: skip


def check_gpu_memory(plan: MemoryPlan) -> Verdict:
    """The first GPU's free memory against the plan's total plus its headroom."""
    import torch

    need = (plan.total + plan.headroom) / GIB
    if not torch.cuda.is_available():
        return Verdict(
            False, f"no GPU; the recipe needs ~{need:.1f} GiB free (the plan above, with headroom)"
        )
    free, total = torch.cuda.mem_get_info(0)
    name = torch.cuda.get_device_properties(0).name
    return Verdict(free / GIB >= need, f"{name}: {free / GIB:.1f} of {total / GIB:.1f} GiB free; the recipe "
                                       f"needs ~{need:.1f} GiB (the plan above, with headroom)")  # fmt: skip


def check_bf16() -> Verdict:
    import torch

    if not torch.cuda.is_available():
        return Verdict(False, "no GPU to ask: the recipe trains in bf16 (A100, H100 and newer support it)")
    supported = torch.cuda.is_bf16_supported()
    return Verdict(
        supported, "bf16 is supported" if supported else "this GPU has no bf16: the recipe needs it"
    )


def check_disk(path: str | os.PathLike, need_bytes: int) -> Verdict:
    """Free space where the run writes (its nearest existing parent folder) against `need_bytes`."""
    folder = Path(path).resolve()
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    return Verdict(free >= need_bytes, f"{free / GIB:,.0f} GiB free under {folder}; the run writes "
                                       f"~{need_bytes / GIB:,.0f} GiB (the disk plan above)")  # fmt: skip


# -------------------------------------------------------------------------------------- model and data
def check_model(name: str, cache_dir: str | os.PathLike | None = None) -> Verdict:
    """A local model folder, or a hub model in the local cache (`cache_dir`: the hub's default), or what it
    takes to get it (licence, login), found without going to the network."""
    from pat_lite.models.loading import TINY_NAME
    from pat_lite.models.smollm2 import SMOLLM2_NAME

    if name in (TINY_NAME, SMOLLM2_NAME):
        return Verdict(True, f"{name} is embedded in pat_lite: no download, no licence")
    path = Path(name).expanduser()
    if path.is_dir():
        found = (path / "config.json").is_file()
        return Verdict(found, f"local folder {path}: " + ("config.json found" if found else "no config.json"))
    from huggingface_hub import get_token, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json", cache_dir=cache_dir), str):
        return Verdict(True, f"{name} is in the Hugging Face cache")
    how = (f"accept the licence at https://huggingface.co/{name}, log in (`hf auth login`) and run once "
           "online, or pass a local folder as model_name_or_path")  # fmt: skip
    if _offline():
        return Verdict(False, f"{name} is not in the Hugging Face cache and HF_HUB_OFFLINE is set: {how}")
    if get_token():
        return Verdict(None, f"{name} is not cached; a hub token is set, so the first run downloads it "
                             "(it needs the licence accepted for that account)")  # fmt: skip
    return Verdict(False, f"{name} is not cached and no hub token is set: {how}")


def check_dataset(data: str, hub_id: str, cache_dir: str | os.PathLike | None = None) -> Verdict:
    """The recipe's instruction data: a local file, or the hub dataset in the local cache (`cache_dir`: the
    hub's default)."""
    path = Path(data).expanduser()
    if data != "lamini":
        return Verdict(path.is_file(), f"local data {path}: " + ("found" if path.is_file() else "not found"))
    from huggingface_hub import scan_cache_dir

    try:
        repos = scan_cache_dir(cache_dir).repos
        cached = any(r.repo_id == hub_id and r.repo_type == "dataset" for r in repos)
    except Exception:  # no cache folder yet, or one that cannot be read
        cached = False
    if cached:
        return Verdict(True, f"{hub_id} is in the Hugging Face cache")
    fetch = (f"fetch it once online (`python -c \"import datasets; datasets.load_dataset('{hub_id}')\"`) or "
             "give a local .parquet/.jsonl copy as the recipe's data setting")  # fmt: skip
    return Verdict(False if _offline() else None, f"{hub_id} is not in the Hugging Face cache: {fetch}")


# ------------------------------------------------------------------------------------------- the disk
def disk_plan(
    cfg: Any, config: Any, plan: MemoryPlan, optimizer_steps: int, local_model: bool
) -> dict[str, int]:
    """Bytes the run writes: the base model's download (unless it is a local folder), the checkpoints the
    Trainer keeps (save_total_limit, plus one being written; each holds LoRA, HSM and mask weights and
    AdamW's two moments: 12 bytes per trainable parameter), the final adapter and the merged bf16 model.
    The dataset's own download is not counted (its size was not measured here)."""
    from pat_lite import PATConfig
    from pat_lite.core.arch import shrunk_config

    width = PATConfig(**cfg.pat).resolve(config).target_width
    merged, _ = base_parameters(shrunk_config(config, width))
    kept = (cfg.save_total_limit or -(-optimizer_steps // cfg.save_steps)) + 1
    return {
        "base model download (bf16)": 0 if local_model else plan.parts["weights"],
        f"checkpoints ({kept} at a time)": kept * 12 * plan.trainable,
        "final adapter/ (float32)": 4 * plan.trainable,
        "merged/ (bf16)": 2 * merged,
    }


# ---------------------------------------------------------------------------------------- the timeline
def timeline(cfg: Any, optimizer_steps: int, hours: float):
    """When the run passes its landmarks (warm-up, β = 0, s0, the end) and what to look for in the training
    log then, at `hours` for the whole run: a table. What to look for follows from the schedule and the
    losses (docs/method.md §4-§5); how the curves of a 7B run actually look has not been seen here."""
    import pandas as pd

    s0 = cfg.pat_config.milestone_for(optimizer_steps)
    target = cfg.pat.get("target_width", "the target width")
    rows = [
        (cfg.warmup_steps, "warm-up ends",
         "the learning rate reaches its peak; the instruction loss should be falling"),
        (s0 // 2, "β reaches 0",
         "no channel keeps a floor of its signal any more; watch the channels with W_M > 0 approach "
         f"{target} and the sparsity loss fall towards the pulls' share"),
        (s0, "s0: the exact mask",
         "from here the gate is the merged model's 0/1 mask (paper schedule): the instruction loss jumps "
         "to what the soft/exact panel showed for the exact mask, then should come down"),
        (optimizer_steps, "the end", "the adapter and the merged model are saved; train_summary.json last"),
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["step", "landmark", "what to look for"])
    frame.insert(1, "hours in", [f"{hours * step / optimizer_steps:,.1f}" for step in frame["step"]])
    frame["step"] = [f"{step:,}" for step in frame["step"]]
    return frame.set_index("step")
