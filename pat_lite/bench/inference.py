"""Inference speed of a dense model vs its PAT-pruned (narrower) version: `pat-lite bench`.

PAT merges into an ordinary dense model whose hidden size d' < d (docs/method.md §1, §8); the paper reports
~1.33x faster time to first token (TTFT, 128-token context) for Llama-2 at 25 % (§9). This module measures
that on any Hugging Face config with random weights (speed does not depend on the values):

- TTFT: one prefill forward of a (batch, context) prompt plus the argmax of the last logits (what
  `generate` does before its first token), median of `repeats` after `warmup` runs;
- decode tokens/s over `decode_tokens` greedy steps with the KV cache;
- peak memory: on CUDA `torch.cuda.max_memory_allocated` per batch size; on CPU the peak RSS of a fresh
  subprocess per model (column `peak_rss_mib`, batch sizes run in ascending order so the running peak is
  the peak of the largest batch so far), plus an estimate from parameter and KV-cache bytes;
- the ideal speedups from the shapes (`ideal_speedup`): FLOP ratio for prefill, weight+KV byte ratio for
  decode, so the measured numbers can be judged against what the width cut can give at most.

The pruned width is aligned (default multiple of 64, so 2048 -> 1536 for TinyLlama) because matmul kernels
run fastest on such sizes; the nearest widths that are only multiples of num_attention_heads are measured
too (`compare_unaligned`) to show what an unaligned width costs.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
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
from pat_lite.core.arch import check_ratio, check_width, head_dim, shrunk_config, width_for_ratio

#: CSV columns, in order. `peak_rss_mib` is measured (CPU, fresh subprocess), `peak_cuda_alloc_mib` is
#: measured (CUDA), `est_weights_kv_mib` is an estimate (parameter bytes + KV cache at the end of decode).
COLUMNS = [
    "model", "variant", "hidden_size", "width", "aligned", "num_layers", "dtype", "device", "threads",
    "batch_size", "context", "decode_tokens", "repeats", "loadavg_1m", "params",
    "ttft_ms", "ttft_ms_min", "ttft_ms_max", "decode_tok_s", "decode_ms_per_step",
    "ttft_cpu_ms", "decode_cpu_ms_per_step",
    "prefill_speedup", "prefill_speedup_best", "prefill_speedup_cpu", "prefill_speedup_ideal",
    "prefill_efficiency", "prefill_efficiency_cpu",
    "decode_speedup", "decode_speedup_best", "decode_speedup_cpu", "decode_speedup_ideal",
    "decode_efficiency", "decode_efficiency_cpu",
    "peak_rss_mib", "peak_cuda_alloc_mib", "est_weights_kv_mib",
]  # fmt: skip


# ---------------------------------------------------------------------------------------------- configs
def unaligned_widths(config: PretrainedConfig, width: int, alignment: int | None) -> list[int]:
    """The widths one num_attention_heads step either side of `width` that miss `alignment`."""
    if not alignment:
        return []
    step = int(config.num_attention_heads)
    out = [w for w in (width - step, width + step) if 0 < w < config.hidden_size and w % alignment]
    return [check_width(config, w) for w in out]


# ---------------------------------------------------------------------------------------- ideal speedup
def model_costs(
    config: PretrainedConfig, context: int = 128, batch_size: int = 1, decode_tokens: int = 16
) -> dict[str, float]:
    """FLOPs of one prefill (per sequence) and elements read per decode step, from the shapes alone.

    Prefill: q/k/v/o/gate/up/down matmuls (2 FLOPs per multiply-add, each scales with d), causal attention
    scores and values 2·(heads·head_dim)·T(T+1) per layer (independent of d: PAT keeps attention width),
    lm_head for the last position only (generate keeps one logit row), embedding = lookup = 0 FLOPs.
    Decode: every weight is read once per step (embedding: only `batch_size` rows) plus the KV cache at
    its mean length context + (decode_tokens+1)/2 (independent of d). Norms and activations are ignored in
    FLOPs (elementwise) but their weights are counted in bytes.
    """
    d, n_layers, vocab = config.hidden_size, config.num_hidden_layers, config.vocab_size
    attn = config.num_attention_heads * head_dim(config)
    kv = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    kv_width = kv * head_dim(config)
    inter = config.intermediate_size
    layer_weights = d * attn + 2 * d * kv_width + attn * d + 3 * d * inter
    t = context
    prefill = n_layers * t * 2 * layer_weights + n_layers * 2 * attn * t * (t + 1) + 2 * d * vocab
    tied = bool(getattr(config, "tie_word_embeddings", False))
    params = n_layers * (layer_weights + 2 * d) + d + vocab * d * (1 if tied else 2)
    mean_len = context + (decode_tokens + 1) / 2
    decode = n_layers * (layer_weights + 2 * d) + d + d * vocab + batch_size * d
    decode += 2 * n_layers * kv_width * mean_len * batch_size
    return {"prefill_flops": float(prefill), "decode_elements": float(decode), "params": float(params)}


def ideal_speedup(
    config: PretrainedConfig, width: int, context: int = 128, batch_size: int = 1, decode_tokens: int = 16
) -> dict[str, float]:
    """Upper bounds for the pruned model's speedup: prefill FLOP ratio and decode byte ratio (dense/pruned).

    Also returns the dense/pruned FLOP, element and parameter counts (`model_costs`) under `dense_*`,
    `pruned_*`. Nearly every matmul has d on one side, so both ratios sit just below d/d' (1.333 at 25 %);
    attention core and KV cache (unchanged by PAT) pull them down a little.
    """
    dense = model_costs(config, context, batch_size, decode_tokens)
    pruned = model_costs(shrunk_config(config, width), context, batch_size, decode_tokens)
    out = {
        "prefill": dense["prefill_flops"] / pruned["prefill_flops"],
        "decode": dense["decode_elements"] / pruned["decode_elements"],
    }
    out.update({f"dense_{k}": v for k, v in dense.items()})
    out.update({f"pruned_{k}": v for k, v in pruned.items()})
    return out


# ------------------------------------------------------------------------------------------ measurement
def _generate_timed(
    model: torch.nn.Module, ids: torch.Tensor, decode_tokens: int, device: str
) -> tuple[float, float, float, float]:
    """Wall and process-CPU seconds of one greedy generation with the KV cache.

    Returns (prefill+first-token wall, decode wall, prefill CPU, decode CPU). CPU time (all threads of this
    process) does not count time spent descheduled, so on a CPU shared with other jobs it is the steadier
    measure of work; wall time is what a user waits.
    """
    import inspect

    cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    with torch.inference_mode():
        sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        tok = out.logits[:, -1].argmax(-1, keepdim=True)
        sync(device)
        t1, c1 = time.perf_counter(), time.process_time()
        for _ in range(decode_tokens):
            cache = getattr(out, "cache", None) or out.past_key_values
            out = model(input_ids=tok, use_cache=True, logits_to_keep=1, **{cache_kw: cache})
            tok = out.logits[:, -1].argmax(-1, keepdim=True)
        sync(device)
        return t1 - t0, time.perf_counter() - t1, c1 - c0, time.process_time() - c1


def measure(
    configs: Sequence[PretrainedConfig], dtype: str, batch_sizes: Sequence[int], context: int = 128,
    decode_tokens: int = 16, repeats: int = 3, warmup: int = 1, device: str = "cpu", seed: int = 0,
    threads: int | None = None, on_batch: Callable[[dict[str, Any]], None] | None = None,
) -> list[list[dict[str, Any]]]:  # fmt: skip
    """Time prefill (TTFT) and greedy decode of several models, interleaved; per model, one dict per batch.

    All models are loaded together and timed round-robin (the starting model rotates each repeat), so
    load from other processes hits them alike; rows keep the raw samples (`_ttft`, `_decode`) so speedups
    can be taken as medians of paired ratios. `on_batch(row)` runs after each batch size of the first model
    (the memory worker, which passes a single model, records peak RSS there). On CUDA each row gets
    `peak_cuda_alloc_mib`, meaningful only when one model is loaded.
    """
    if threads:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    models = [build_random_model(c, DTYPES[dtype], device, seed) for c in configs]
    gen = torch.Generator().manual_seed(seed)
    out: list[list[dict[str, Any]]] = [[] for _ in models]
    for bs in sorted(batch_sizes):
        ids = torch.randint(0, configs[0].vocab_size, (bs, context), generator=gen).to(device)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        samples: list[list[tuple[float, ...]]] = [[] for _ in models]
        for model in models:
            for _ in range(warmup):
                _generate_timed(model, ids, decode_tokens, device)
        for r in range(repeats):
            for k in range(len(models)):
                i = (k + r) % len(models)
                samples[i].append(_generate_timed(models[i], ids, decode_tokens, device))
        for i, model in enumerate(models):
            ttft, dec, ttft_cpu, dec_cpu = (list(x) for x in zip(*samples[i], strict=True))
            dec_s = statistics.median(dec)
            row: dict[str, Any] = {
                "batch_size": bs, "params": sum(p.numel() for p in model.parameters()),
                "threads": torch.get_num_threads(), "loadavg_1m": os.getloadavg()[0],
                "ttft_ms": 1e3 * statistics.median(ttft), "ttft_ms_min": 1e3 * min(ttft),
                "ttft_ms_max": 1e3 * max(ttft),
                "decode_tok_s": bs * decode_tokens / dec_s if decode_tokens else float("nan"),
                "decode_ms_per_step": 1e3 * dec_s / decode_tokens if decode_tokens else float("nan"),
                "ttft_cpu_ms": 1e3 * statistics.median(ttft_cpu),
                "decode_cpu_ms_per_step": 1e3 * statistics.median(dec_cpu) / decode_tokens,
                "_ttft": ttft, "_decode": dec, "_ttft_cpu": ttft_cpu, "_decode_cpu": dec_cpu,
            }  # fmt: skip
            if device.startswith("cuda"):
                row["peak_cuda_alloc_mib"] = torch.cuda.max_memory_allocated() / 2**20
            if on_batch and i == 0:
                on_batch(row)
            out[i].append(row)
    return out


def measure_memory(config: PretrainedConfig, **kwargs: Any) -> list[dict[str, Any]]:
    """One untimed-quality generation per batch size of a single model, for its peak memory.

    CPU: in a fresh Python process, so the peak RSS (`peak_rss_mib`, running maximum over ascending batch
    sizes) belongs to this model alone. CUDA: in this process, `torch.cuda.max_memory_allocated` per batch.
    """
    kwargs.update(repeats=1, warmup=0)
    if str(kwargs.get("device", "cpu")).startswith("cuda"):
        rows = measure([config], **kwargs)[0]
        torch.cuda.empty_cache()
        return rows
    return in_fresh_process("pat_lite.bench.inference", config, kwargs)


def _worker(tmp: str) -> None:
    """Subprocess entry of `measure_memory`: record the running peak RSS after each batch size."""
    config, spec = worker_inputs(tmp)
    rows = measure([config], on_batch=lambda row: row.update(peak_rss_mib=peak_rss_mib()), **spec)[0]
    worker_output(tmp, rows)


# ------------------------------------------------------------------------------------------- benchmark
def _paired_speedup(ref: list[float], new: list[float], higher_is_better: bool = False) -> float:
    """Median over repeats of the per-repeat ratio (robust to load drifting between repeats)."""
    ratios = [(n / r) if higher_is_better else (r / n) for r, n in zip(ref, new, strict=True)]
    return statistics.median(ratios)


def run_benchmark(
    config_or_name: PretrainedConfig | str = "tinyllama", ratio: float = 0.25, width: int | None = None, *,
    alignment: int | None = 64, compare_unaligned: bool = True, extra_widths: Sequence[int] = (),
    batch_sizes: Sequence[int] = (1, 4, 16), dtypes: Sequence[str] = ("float32",), context: int = 128,
    decode_tokens: int = 16, repeats: int = 3, warmup: int = 1, num_layers: int | None = None,
    device: str = "auto", threads: int | None = None, memory: bool = True, seed: int = 0,
    verbose: bool = True,
) -> list[dict[str, Any]]:  # fmt: skip
    """Benchmark the dense model against its pruned width(s); one row (COLUMNS) per dtype/variant/batch.

    Variants: `dense`; `pruned` at `width` (default: `width_for_ratio(config, ratio, alignment)`);
    `unaligned` at the nearest widths that are multiples of num_attention_heads only (if
    `compare_unaligned`); `extra` at `extra_widths`. Timing: all variants of one dtype loaded together,
    interleaved (see `measure`). `memory`: one extra pass per model (`measure_memory`) for peak memory.
    """
    check_ratio(ratio)
    for name in dtypes:
        if name not in DTYPES:
            raise BenchConfigError(f"unknown dtype {name!r}; choose from {', '.join(DTYPES)}")
    if not batch_sizes or min(batch_sizes) < 1 or repeats < 1 or context < 1 or decode_tokens < 1:
        raise BenchConfigError("batch sizes, repeats, context and decode_tokens must be >= 1")
    config = resolve_config(config_or_name, num_layers)
    name = str(getattr(config, "name_or_path", "") or config.model_type)
    if width is None:
        width = width_for_ratio(config, ratio, alignment)
    check_width(config, width)
    variants: list[tuple[str, int | None]] = [("dense", None), ("pruned", width)]
    if compare_unaligned:
        variants += [("unaligned", w) for w in unaligned_widths(config, width, alignment)]
    variants += [("extra", int(w)) for w in extra_widths if int(w) != width]
    configs = [config if w is None else shrunk_config(config, w) for _, w in variants]
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    rows: list[dict[str, Any]] = []
    for dtype in dtypes:
        kwargs = dict(
            dtype=dtype, batch_sizes=list(batch_sizes), context=context, decode_tokens=decode_tokens,
            device=device, seed=seed, threads=threads,
        )  # fmt: skip
        t0 = time.perf_counter()
        if verbose:
            widths = ", ".join(f"{v} {c.hidden_size}" for (v, _), c in zip(variants, configs, strict=True))
            print(
                f"[bench] {name} ({config.num_hidden_layers} layers) {dtype} on {device}: {widths}",
                flush=True,
            )
        timed = measure(configs, repeats=repeats, warmup=warmup, **kwargs)
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        if verbose:
            print(f"[bench]   timing done in {time.perf_counter() - t0:.0f} s", flush=True)
        mems = [measure_memory(c, **kwargs) if memory else None for c in configs]
        if verbose and memory:
            print(f"[bench]   memory passes done in {time.perf_counter() - t0:.0f} s", flush=True)
        for (variant, w), cfg, measured, mem in zip(variants, configs, timed, mems, strict=True):
            for j, m in enumerate(measured):
                bs = m["batch_size"]
                row = {c: "" for c in COLUMNS}
                row.update(m)
                for key in ("peak_rss_mib", "peak_cuda_alloc_mib"):
                    row[key] = mem[j].get(key, "") if mem else ""
                row.update(
                    model=name, variant=variant, hidden_size=config.hidden_size, width=cfg.hidden_size,
                    aligned=bool(alignment) and cfg.hidden_size % alignment == 0, dtype=dtype,
                    num_layers=config.num_hidden_layers, device=device, context=context,
                    decode_tokens=decode_tokens, repeats=repeats,
                )  # fmt: skip
                kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
                kv_elems = (
                    2 * cfg.num_hidden_layers * kv_heads * head_dim(cfg) * (context + decode_tokens) * bs
                )
                row["est_weights_kv_mib"] = (m["params"] + kv_elems) * DTYPES[dtype].itemsize / 2**20
                ideal = ideal_speedup(config, w, context, bs, decode_tokens) if w else None
                ref = timed[0][j]
                row.update(
                    prefill_speedup=_paired_speedup(ref["_ttft"], m["_ttft"]),
                    decode_speedup=_paired_speedup(ref["_decode"], m["_decode"]),
                    prefill_speedup_cpu=_paired_speedup(ref["_ttft_cpu"], m["_ttft_cpu"]),
                    decode_speedup_cpu=_paired_speedup(ref["_decode_cpu"], m["_decode_cpu"]),
                    prefill_speedup_best=min(ref["_ttft"]) / min(m["_ttft"]),
                    decode_speedup_best=min(ref["_decode"]) / min(m["_decode"]),
                    prefill_speedup_ideal=ideal["prefill"] if ideal else 1.0,
                    decode_speedup_ideal=ideal["decode"] if ideal else 1.0,
                )
                row["prefill_efficiency"] = row["prefill_speedup"] / row["prefill_speedup_ideal"]
                row["decode_efficiency"] = row["decode_speedup"] / row["decode_speedup_ideal"]
                row["prefill_efficiency_cpu"] = row["prefill_speedup_cpu"] / row["prefill_speedup_ideal"]
                row["decode_efficiency_cpu"] = row["decode_speedup_cpu"] / row["decode_speedup_ideal"]
                rows.append(row)
        del timed
    return rows


#: Panel titles of the memory column `plot_benchmark` shows (the first one the rows have values for).
MEMORY_TITLES = {
    "peak_cuda_alloc_mib": "peak CUDA memory allocated (MiB)",
    "peak_rss_mib": "peak process memory, RSS (MiB)",
    "est_weights_kv_mib": "estimated memory: weights + KV cache (MiB)",
}


def plot_benchmark(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """PNG of `benchmark_figure(rows)` at `path` (folders created); returns the path."""
    fig = benchmark_figure(rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def benchmark_figure(rows: Sequence[dict[str, Any]]):
    """TTFT vs batch size, measured vs ideal prefill and decode speedups, and memory (measured peak, or the
    weights + KV-cache estimate when no peak was measured); one panel each."""
    # A bare Figure draws without pyplot, so the caller's backend (e.g. a notebook's inline) is untouched.
    import matplotlib
    from matplotlib.figure import Figure

    fig = Figure(figsize=(18, 4.2))
    axes = fig.subplots(1, 4)
    series: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in rows:
        series.setdefault((r["dtype"], r["variant"], r["width"]), []).append(r)
    markers = {"float32": "o", "bfloat16": "s", "float16": "^"}
    palette = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    colours: dict[tuple[str, int], str] = {}
    cuda = any(r.get("peak_cuda_alloc_mib") not in ("", None) for r in rows)
    mem_col = "peak_cuda_alloc_mib" if cuda else "peak_rss_mib"
    if all(r.get(mem_col) in ("", None) for r in rows):
        mem_col = "est_weights_kv_mib"
    for (dtype, variant, width), rs in series.items():
        rs = sorted(rs, key=lambda r: r["batch_size"])
        bs = [r["batch_size"] for r in rs]
        colour = colours.setdefault((variant, width), palette[len(colours) % len(palette)])
        style = dict(color=colour, marker=markers.get(dtype, "o"), label=f"{variant} {width} {dtype}")
        axes[0].plot(bs, [r["ttft_ms"] for r in rs], "-", **style)
        axes[3].plot(bs, [float(r[mem_col]) for r in rs], "-", **style)
        if variant != "dense":
            for ax, key in ((axes[1], "prefill"), (axes[2], "decode")):
                ax.plot(bs, [r[f"{key}_speedup"] for r in rs], "-", **style)
                if rs[0]["device"] == "cpu":
                    ax.plot(bs, [r[f"{key}_speedup_cpu"] for r in rs], "--", color=colour, marker="x")
                # marker "_" keeps the ideal visible when there is a single batch size (no line to draw)
                ideal = [r[f"{key}_speedup_ideal"] for r in rs]
                ax.plot(bs, ideal, ":", color=colour, alpha=0.7, marker="_", markersize=14)
    titles = ["time to first token (ms)", "prefill speedup (ideal: FLOP ratio)",
              "decode speedup (ideal: byte ratio)", MEMORY_TITLES[mem_col]]  # fmt: skip
    for ax in axes[1:3]:
        ax.plot([], [], "k-", label="wall time")
        if any(r["device"] == "cpu" for r in rows):
            ax.plot([], [], "k--", marker="x", label="CPU time")
        ax.plot([], [], "k:", marker="_", markersize=14, label="ideal")
        ax.legend(fontsize=7)
    sizes = sorted({r["batch_size"] for r in rows})
    for ax, title in zip(axes, titles, strict=True):
        ax.set_title(title, fontsize=10)
        if len(sizes) > 1:  # batch sizes grow geometrically; one size needs no log axis
            ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.minorticks_off()
        ax.set_xlabel("batch size")
        ax.grid(alpha=0.3)
    if len(sizes) > 1:
        axes[0].set_yscale("log")
    axes[0].legend(fontsize=7)
    if rows:
        r = rows[0]
        fig.suptitle(f"{r['model']} ({r['num_layers']} layers), context {r['context']}, {r['device']}")
    fig.tight_layout()
    return fig


def format_summary(rows: Sequence[dict[str, Any]]) -> str:
    """Plain-text table: TTFT, decode speed, measured (wall, best-of, CPU time) vs ideal speedup, memory."""
    head = (
        f"{'dtype':8} {'variant':9} {'width':>5} {'bs':>3} | {'TTFT ms':>8} {'x wall':>6} {'x best':>6} "
        f"{'x cpu':>6} {'ideal':>6} | {'tok/s':>7} {'x wall':>6} {'x best':>6} {'x cpu':>6} {'ideal':>6} "
        f"| {'mem MiB':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        mem = next((r[c] for c in ("peak_cuda_alloc_mib", "peak_rss_mib") if r.get(c) not in ("", None)), "")
        mem_s = f"{mem:8.0f}" if mem != "" else f"~{r['est_weights_kv_mib']:7.0f}"
        lines.append(
            f"{r['dtype']:8} {r['variant']:9} {r['width']:5d} {r['batch_size']:3d} | {r['ttft_ms']:8.1f} "
            f"{r['prefill_speedup']:6.3f} {r['prefill_speedup_best']:6.3f} {r['prefill_speedup_cpu']:6.3f} "
            f"{r['prefill_speedup_ideal']:6.3f} | {r['decode_tok_s']:7.2f} {r['decode_speedup']:6.3f} "
            f"{r['decode_speedup_best']:6.3f} {r['decode_speedup_cpu']:6.3f} "
            f"{r['decode_speedup_ideal']:6.3f} | {mem_s}"
        )
    lines.append(
        "x wall: median of paired per-repeat wall-time ratios vs dense; x best: ratio of the fastest "
        "repeats;\nx cpu: as x wall, on process CPU time (steady when other jobs share the CPU); "
        "ideal: FLOP ratio (prefill), byte ratio (decode);\nmem: peak (~ = estimate: parameter + KV bytes)"
    )
    return "\n".join(lines)


#: Every option of `run_benchmark` the CLI and preset files (configs/bench/*.yaml) may set, with defaults.
DEFAULT_OPTIONS: dict[str, Any] = dict(
    config="tinyllama",
    ratio=0.25,
    width=None,
    alignment=64,
    compare_unaligned=True,
    extra_widths=(),
    batch_sizes=(1, 4, 16),
    dtypes=("float32", "bfloat16"),
    context=128,
    decode_tokens=16,
    repeats=3,
    warmup=1,
    num_layers=None,
    device="auto",
    threads=None,
    memory=True,
    seed=0,
    out="artifacts/bench",
)


if __name__ == "__main__":  # the fresh-process memory worker (see common.in_fresh_process)
    if sys.argv[1:2] != ["--worker"]:
        sys.exit("run the benchmark with `pat-lite bench ...`")
    _worker(sys.argv[2])
