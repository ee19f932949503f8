"""Training cost of PAT vs plain LoRA on the same model and batch: `pat-lite bench-train`.

Both runs wrap the same random-weight model with the same peft LoRA (all linear layers except lm_head, as
`pat_lite.training.trainer.build_model` does); the PAT run also has the HSMs and the global mask attached
(`attach_pat`) and adds `pat_losses(model)["total"]` to the LM loss. One step = forward + backward +
AdamW step. Reported per method: median step time (both models are timed interleaved, so load from other
processes hits them alike, and the ratio is the median of paired per-step ratios), trainable parameters and
peak memory (CPU: peak RSS of a fresh subprocess per method; CUDA: `torch.cuda.max_memory_allocated`).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch
from transformers import PretrainedConfig

from pat_lite.bench.common import (
    DTYPES,
    BenchConfigError,
    build_random_model,
    in_fresh_process,
    peak_rss_mib,
    resolve_config,
    sync,
    worker_inputs,
    worker_output,
)
from pat_lite.core.arch import check_ratio
from pat_lite.utils.device import check_device

METHODS = ("lora", "pat")
TRAIN_COLUMNS = [
    "model", "method", "hidden_size", "width", "num_layers", "dtype", "device", "threads", "batch_size",
    "seq_len", "steps", "lora_r", "hio_rank", "trainable_params", "step_ms", "step_ms_min", "step_ms_max",
    "step_time_ratio", "step_cpu_ms", "step_cpu_ratio", "peak_rss_mib", "peak_cuda_alloc_mib",
    "peak_mem_ratio", "loadavg_1m",
]  # fmt: skip


def build_train_model(
    config: PretrainedConfig, method: str, *, dtype: str = "float32", device: str = "cpu", lora_r: int = 8,
    pruning_ratio: float = 0.25, hio_rank: int | None = None, seed: int = 0,
) -> torch.nn.Module:  # fmt: skip
    """Random-weight model, peft LoRA on every linear layer but lm_head; PAT attached if method='pat'."""
    from peft import LoraConfig

    from pat_lite import PATConfig
    from pat_lite.training.trainer import add_adapters

    if method not in METHODS:
        raise BenchConfigError(f"method must be one of {METHODS}, got {method!r}")
    model = build_random_model(config, DTYPES[dtype], device, seed)
    pat = PATConfig(pruning_ratio=pruning_ratio, hio_rank=hio_rank, milestone_step=100)
    lora = LoraConfig(r=lora_r, lora_alpha=2 * lora_r, target_modules="all-linear", task_type="CAUSAL_LM")
    model = add_adapters(model, method, pat, lora)
    return model.train()


def _train_step(
    model: torch.nn.Module, opt: torch.optim.Optimizer, ids: torch.Tensor, step: int, pat: bool
) -> None:
    from pat_lite import pat_losses, set_pat_step

    if pat:
        set_pat_step(model, step)
    loss = model(input_ids=ids, labels=ids).loss
    if pat:
        loss = loss + pat_losses(model)["total"]
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def measure_train(
    config: PretrainedConfig, methods: Sequence[str] = METHODS, *, steps: int = 3, warmup: int = 1,
    batch_size: int = 2, seq_len: int = 128, threads: int | None = None, **build: Any,
) -> list[dict[str, Any]]:  # fmt: skip
    """Step times of `methods`, interleaved step by step; one dict per method with the raw samples."""
    if threads:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    device = build.get("device", "cpu")
    models = [build_train_model(config, m, **build) for m in methods]
    opts = [torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4) for m in models]
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, config.vocab_size, (batch_size, seq_len), generator=gen).to(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    samples: list[list[float]] = [[] for _ in models]
    cpu: list[list[float]] = [[] for _ in models]
    for step in range(warmup + steps):
        for k in range(len(models)):
            i = (k + step) % len(models)
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            _train_step(models[i], opts[i], ids, step, methods[i] == "pat")
            sync(device)
            if step >= warmup:
                samples[i].append(time.perf_counter() - t0)
                cpu[i].append(time.process_time() - c0)
    rows = []
    for method, model, times, cpu_times in zip(methods, models, samples, cpu, strict=True):
        row = {
            "method": method,
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "step_ms": 1e3 * statistics.median(times), "step_ms_min": 1e3 * min(times),
            "step_ms_max": 1e3 * max(times), "threads": torch.get_num_threads(),
            "step_cpu_ms": 1e3 * statistics.median(cpu_times),
            "loadavg_1m": os.getloadavg()[0], "_steps": times, "_steps_cpu": cpu_times,
        }  # fmt: skip
        if device.startswith("cuda"):
            row["peak_cuda_alloc_mib"] = torch.cuda.max_memory_allocated() / 2**20
        rows.append(row)
    return rows


def _memory_pass(config: PretrainedConfig, method: str, **kwargs: Any) -> dict[str, Any]:
    """Peak memory of two steps of one method alone (CPU: fresh subprocess; CUDA: this process)."""
    kwargs.update(steps=2, warmup=0)
    if str(kwargs.get("device", "cpu")).startswith("cuda"):
        row = measure_train(config, [method], **kwargs)[0]
        torch.cuda.empty_cache()
        return row
    return in_fresh_process("pat_lite.bench.training_cost", config, {"method": method, **kwargs})


def _worker(tmp: str) -> None:
    config, spec = worker_inputs(tmp)
    method = spec.pop("method")
    row = measure_train(config, [method], **spec)[0]
    row["peak_rss_mib"] = peak_rss_mib()
    worker_output(tmp, row)


def run_train_benchmark(
    config_or_name: PretrainedConfig | str = "tinyllama", *, num_layers: int | None = 2, batch_size: int = 2,
    seq_len: int = 128, steps: int = 3, warmup: int = 1, lora_r: int = 8, pruning_ratio: float = 0.25,
    hio_rank: int | None = None, dtype: str = "float32", device: str = "auto", threads: int | None = None,
    memory: bool = True, verbose: bool = True,
) -> list[dict[str, Any]]:  # fmt: skip
    """PAT vs LoRA training step time and peak memory; rows (TRAIN_COLUMNS), `*_ratio` = PAT / LoRA."""
    check_ratio(pruning_ratio)
    if dtype not in DTYPES:
        raise BenchConfigError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    config = resolve_config(config_or_name, num_layers)
    if check_device(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    build = dict(dtype=dtype, device=device, lora_r=lora_r, pruning_ratio=pruning_ratio, hio_rank=hio_rank)
    common = dict(batch_size=batch_size, seq_len=seq_len, threads=threads, **build)
    t0 = time.perf_counter()
    rows = measure_train(config, METHODS, steps=steps, warmup=warmup, **common)
    if verbose:
        print(f"[bench-train] timing done in {time.perf_counter() - t0:.0f} s", flush=True)
    from pat_lite import PATConfig

    resolved = PATConfig(pruning_ratio=pruning_ratio, hio_rank=hio_rank).resolve(config)
    for row in rows:
        if memory:
            mem = _memory_pass(config, row["method"], **common)
            row["peak_rss_mib"] = mem.get("peak_rss_mib", "")
            row["peak_cuda_alloc_mib"] = mem.get("peak_cuda_alloc_mib", "")
        row.update(
            model=str(getattr(config, "name_or_path", "") or config.model_type),
            hidden_size=config.hidden_size,
            width=resolved.target_width, num_layers=config.num_hidden_layers, dtype=dtype, device=device,
            batch_size=batch_size, seq_len=seq_len, steps=steps, lora_r=lora_r,
            hio_rank=resolved.hio_rank if row["method"] == "pat" else "",
        )  # fmt: skip
    lora, pat = rows
    pat["step_time_ratio"] = statistics.median(
        p / q for p, q in zip(pat["_steps"], lora["_steps"], strict=True)
    )
    pat["step_cpu_ratio"] = statistics.median(
        p / q for p, q in zip(pat["_steps_cpu"], lora["_steps_cpu"], strict=True)
    )
    lora["step_time_ratio"] = lora["step_cpu_ratio"] = 1.0
    for key in ("peak_cuda_alloc_mib", "peak_rss_mib"):
        if pat.get(key) not in ("", None) and lora.get(key) not in ("", None):
            pat["peak_mem_ratio"], lora["peak_mem_ratio"] = pat[key] / lora[key], 1.0
            break
    if verbose:
        print(f"[bench-train] done in {time.perf_counter() - t0:.0f} s", flush=True)
    return rows


def format_train_summary(rows: Sequence[dict[str, Any]]) -> str:
    """Plain-text table of the training benchmark."""
    lines = [
        f"{'method':6} {'trainable':>10} {'step ms':>9} {'x LoRA':>7} {'cpu ms':>8} {'x LoRA':>7} "
        f"{'peak MiB':>9} {'x LoRA':>7}"
    ]
    for r in rows:
        mem = next(
            (r[c] for c in ("peak_cuda_alloc_mib", "peak_rss_mib") if r.get(c) not in ("", None)), None
        )
        mem_s = f"{mem:9.0f}" if mem is not None else f"{'-':>9}"
        ratio = r.get("peak_mem_ratio", "")
        ratio_s = f"{ratio:7.3f}" if ratio != "" else f"{'-':>7}"
        lines.append(
            f"{r['method']:6} {r['trainable_params']:10d} {r['step_ms']:9.0f} {r['step_time_ratio']:7.3f} "
            f"{r['step_cpu_ms']:8.0f} {r['step_cpu_ratio']:7.3f} {mem_s} {ratio_s}"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # the fresh-process memory worker (see common.in_fresh_process)
    if sys.argv[1:2] != ["--worker"]:
        sys.exit("run the benchmark with `pat-lite bench-train ...`")
    _worker(sys.argv[2])
