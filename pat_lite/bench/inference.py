"""Inference speed of a dense model vs its PAT-pruned (narrower) version: `pat-lite bench`.

PAT merges into an ordinary dense model whose hidden size d' < d (docs/method.md §1, §8); the paper reports
~1.33x faster time to first token (TTFT, 128-token context) for Llama-2 at 25 % (§9). This module measures
that on any Hugging Face config with random weights (speed does not depend on the values), or on real
weights (`weights`: the embedded SmolLM2-135M or a local checkpoint, `pat_lite.bench.real_weights`):

- TTFT: one prefill forward of a (batch, context) prompt plus the argmax of the last logits (what
  `generate` does before its first token);
- decode: `decode_tokens` greedy steps with the KV cache, per step;
- both under one or more runtimes (`pat_lite.bench.runtime`: dynamic or static KV cache, torch.compile,
  weight layout), every (model, runtime) pair timed round-robin in one process, so that load from other
  processes hits them alike; speedups are medians of paired per-repeat ratios (wall and process-CPU time);
- the ideal speedups (`pat_lite.bench.costs`): the naive one (matmul FLOPs / weight + KV elements) and the
  honest one (every term, shrinking or not, plus the fixed per-step cost measured on the "floor" model, the
  same architecture at negligible width, under the same runtime);
- peak memory: on CUDA `torch.cuda.max_memory_allocated` per batch size; on CPU the peak RSS of a fresh
  subprocess per model under the first runtime (column `peak_rss_mib`, batch sizes ascending, so the
  running peak is the peak of the largest batch so far), plus an estimate from parameter and KV bytes.

The pruned width is aligned (default multiple of 64, so 2048 -> 1536 for TinyLlama) because matmul kernels
run fastest on such sizes; the nearest widths that are only multiples of num_attention_heads are measured
too (`compare_unaligned`) to show what an unaligned width costs.
"""

from __future__ import annotations

import contextlib
import copy
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import PretrainedConfig

from pat_lite.bench.common import (
    DTYPES,
    BenchConfigError,
    ModelSource,
    in_fresh_process,
    load_model,
    peak_rss_mib,
    resolve_config,
    worker_inputs,
    worker_output,
)
from pat_lite.bench.costs import (
    floor_config,
    honest_decode_elements,
    honest_prefill_flops,
    honest_speedup,
    naive_speedup,
)
from pat_lite.bench.real_weights import real_checkpoint, save_real_variants, wants_real_weights
from pat_lite.bench.runtime import Engine, Runtime, compile_settings, to_in_out_layout
from pat_lite.core.arch import check_ratio, check_width, head_dim, shrunk_config, width_for_ratio
from pat_lite.utils.device import check_device

__all__ = ["COLUMNS", "DEFAULT_OPTIONS", "run_benchmark"]

#: CSV columns, in order. `*_ideal` is the naive ideal, `*_ideal_honest` the honest one; `*_efficiency*`
#: is measured speedup / ideal (wall or CPU time); `*_cpu_q1`, `*_cpu_q3`: quartiles of the paired
#: per-repeat CPU-time ratios (their spread shows the noise). `floor_*`: the floor model, same runtime.
#: `*_runtime_gain_cpu`: this runtime vs the first runtime, same model (paired CPU-time ratio).
#: `peak_rss_mib` is measured (CPU, fresh subprocess, first runtime), `peak_cuda_alloc_mib` is measured
#: (CUDA), `est_weights_kv_mib` is an estimate (parameter bytes + KV cache at the end of decode).
COLUMNS = [
    "model", "weights", "variant", "runtime", "hidden_size", "width", "aligned", "num_layers", "dtype",
    "device", "threads", "batch_size", "context", "decode_tokens", "repeats", "loadavg_1m", "params",
    "ttft_ms", "ttft_ms_min", "ttft_ms_max", "decode_tok_s", "decode_ms_per_step",
    "ttft_cpu_ms", "decode_cpu_ms_per_step", "floor_ttft_cpu_ms", "floor_decode_cpu_ms_per_step",
    "prefill_speedup", "prefill_speedup_best", "prefill_speedup_cpu", "prefill_speedup_cpu_q1",
    "prefill_speedup_cpu_q3", "prefill_speedup_ideal",
    "prefill_speedup_ideal_honest", "prefill_efficiency", "prefill_efficiency_cpu",
    "prefill_efficiency_honest", "prefill_efficiency_honest_cpu",
    "decode_speedup", "decode_speedup_best", "decode_speedup_cpu", "decode_speedup_cpu_q1",
    "decode_speedup_cpu_q3", "decode_speedup_ideal",
    "decode_speedup_ideal_honest", "decode_efficiency", "decode_efficiency_cpu",
    "decode_efficiency_honest", "decode_efficiency_honest_cpu",
    "prefill_runtime_gain_cpu", "decode_runtime_gain_cpu",
    "peak_rss_mib", "peak_cuda_alloc_mib", "est_weights_kv_mib",
]  # fmt: skip


#: How `measure` interleaves the engines within a repeat (see its docstring).
INTERLEAVES = ("step", "generation")


# ---------------------------------------------------------------------------------------------- configs
def unaligned_widths(config: PretrainedConfig, width: int, alignment: int | None) -> list[int]:
    """The widths one num_attention_heads step either side of `width` that miss `alignment`."""
    if not alignment:
        return []
    step = int(config.num_attention_heads)
    out = [w for w in (width - step, width + step) if 0 < w < config.hidden_size and w % alignment]
    return [check_width(config, w) for w in out]


# ------------------------------------------------------------------------------------------ measurement
def measure(
    sources: Sequence[ModelSource], dtype: str, batch_sizes: Sequence[int], context: int = 128,
    decode_tokens: int = 16, repeats: int = 3, warmup: int = 1, device: str = "cpu", seed: int = 0,
    threads: int | None = None, runtimes: Sequence[Runtime | str] = ("dynamic",), interleave: str = "step",
    on_batch: Callable[[dict[str, Any]], None] | None = None,
) -> list[list[list[dict[str, Any]]]]:  # fmt: skip
    """Time prefill (TTFT) and greedy decode of several models under several runtimes, interleaved.

    Returns `out[model][runtime]`: one dict per batch size. Each repeat runs one generation per
    (model, runtime) pair — an "engine" — in a rotating order:
    - `interleave="step"` (default): every engine prefills, then all engines advance one decode step at a
      time, in an order that rotates every step. A dense step and its pruned step are then ~0.1 s apart,
      so load from other processes hits both alike: the paired ratios are several times tighter on a
      shared machine than with whole generations. Each model's weights are evicted from the caches by the
      others between its steps: this measures streaming from memory (what the byte model assumes); a
      model small enough to stay in the last-level cache would run faster alone.
    - `interleave="generation"`: each engine runs its whole generation alone, one after the other.
    Rows keep the raw samples (`_ttft`, `_decode`, `_ttft_cpu`, `_decode_cpu`: per repeat; decode is the
    sum of its steps) so speedups can be taken as medians of paired ratios. Models are loaded once per
    weight layout. `on_batch(row)` runs after each batch size of the first engine (the memory worker,
    which passes one model and one runtime, records peak RSS there). On CUDA each row gets
    `peak_cuda_alloc_mib`, meaningful only when one model is loaded.
    """
    runtimes = [Runtime.parse(r) for r in runtimes]
    if interleave not in INTERLEAVES:
        raise BenchConfigError(f"interleave must be one of {', '.join(INTERLEAVES)}, got {interleave!r}")
    if any(r.compile for r in runtimes) and warmup < 1:
        raise BenchConfigError("a compiled runtime needs warmup >= 1 (the first run compiles)")
    if threads:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    layouts = sorted({r.weight_layout for r in runtimes})
    models: list[dict[str, torch.nn.Module]] = []
    for source in sources:
        base = load_model(source, DTYPES[dtype], device, seed)
        by_layout = {"out_in": base} if "out_in" in layouts else {}
        if "in_out" in layouts:
            by_layout["in_out"] = to_in_out_layout(copy.deepcopy(base) if "out_in" in layouts else base)
        models.append(by_layout)
    engines = [
        [Engine(m[r.weight_layout], r, context, decode_tokens, device) for r in runtimes] for m in models
    ]
    # Runtime-major: a runtime's dense and pruned models run back to back, so their paired ratio sees
    # the same load from other processes.
    pairs = [(i, j) for j in range(len(runtimes)) for i in range(len(engines))]
    gen = torch.Generator().manual_seed(seed)
    out: list[list[list[dict[str, Any]]]] = [[[] for _ in runtimes] for _ in engines]
    compiled = sum(r.compile for r in runtimes) * len(sources) * len(batch_sizes)
    with compile_settings(compiled) if compiled else contextlib.nullcontext():
        for bs in sorted(batch_sizes):
            ids = torch.randint(0, sources[0].config.vocab_size, (bs, context), generator=gen).to(device)
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            samples: dict[tuple[int, int], list[tuple[float, ...]]] = {p: [] for p in pairs}
            for i, j in pairs:
                for _ in range(warmup):
                    engines[i][j].generate_timed(ids)
            for r in range(repeats):
                rotated = pairs[r % len(pairs) :] + pairs[: r % len(pairs)]
                order = [engines[i][j] for i, j in rotated]
                for pair, timed in zip(
                    rotated, _one_repeat(order, ids, decode_tokens, interleave), strict=True
                ):
                    samples[pair].append(timed)
            for i, j in pairs:
                out[i][j].append(_timing_row(samples[(i, j)], bs, decode_tokens, models[i]))
                if device.startswith("cuda"):
                    out[i][j][-1]["peak_cuda_alloc_mib"] = torch.cuda.max_memory_allocated() / 2**20
                if on_batch and (i, j) == (0, 0):
                    on_batch(out[i][j][-1])
    return out


def _one_repeat(
    order: list[Engine], ids: torch.Tensor, decode_tokens: int, interleave: str
) -> list[tuple[float, float, float, float]]:
    """One generation per engine, started in `order`; each engine's (TTFT wall, decode wall, TTFT CPU,
    decode CPU), in `order`."""
    if interleave == "generation":
        timed = [engine.generate_timed(ids) for engine in order]
    else:
        prefill = [engine.prefill(ids) for engine in order]
        decode = [[0.0, 0.0] for _ in order]
        for t in range(decode_tokens):
            for k in range(len(order)):
                e = (k + t) % len(order)
                wall, cpu = order[e].step()
                decode[e][0] += wall
                decode[e][1] += cpu
        timed = [(p[0], d[0], p[1], d[1]) for p, d in zip(prefill, decode, strict=True)]
    return timed


def _timing_row(
    samples: list[tuple[float, ...]], bs: int, decode_tokens: int, models: dict[str, torch.nn.Module]
) -> dict[str, Any]:
    ttft, dec, ttft_cpu, dec_cpu = (list(x) for x in zip(*samples, strict=True))
    dec_s = statistics.median(dec)
    model = next(iter(models.values()))
    return {
        "batch_size": bs, "params": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(), "loadavg_1m": os.getloadavg()[0],
        "ttft_ms": 1e3 * statistics.median(ttft), "ttft_ms_min": 1e3 * min(ttft),
        "ttft_ms_max": 1e3 * max(ttft),
        "decode_tok_s": bs * decode_tokens / dec_s, "decode_ms_per_step": 1e3 * dec_s / decode_tokens,
        "ttft_cpu_ms": 1e3 * statistics.median(ttft_cpu),
        "decode_cpu_ms_per_step": 1e3 * statistics.median(dec_cpu) / decode_tokens,
        "_ttft": ttft, "_decode": dec, "_ttft_cpu": ttft_cpu, "_decode_cpu": dec_cpu,
    }  # fmt: skip


def measure_memory(source: ModelSource, **kwargs: Any) -> list[dict[str, Any]]:
    """One generation per batch size of a single model under `kwargs["runtimes"][0]`, for its peak memory.

    CPU: in a fresh Python process, so the peak RSS (`peak_rss_mib`, running maximum over ascending batch
    sizes) belongs to this model alone. CUDA: in this process, `torch.cuda.max_memory_allocated` per batch.
    """
    runtime = Runtime.parse(kwargs.get("runtimes", ["dynamic"])[0])
    kwargs.update(repeats=1, warmup=int(runtime.compile), runtimes=[runtime.name])
    if str(kwargs.get("device", "cpu")).startswith("cuda"):
        rows = measure([source], **kwargs)[0][0]
        torch.cuda.empty_cache()
        return rows
    return in_fresh_process(
        "pat_lite.bench.inference", source.config, {**kwargs, "checkpoint": source.checkpoint}
    )


def _worker(tmp: str) -> None:
    """Subprocess entry of `measure_memory`: record the running peak RSS after each batch size."""
    config, spec = worker_inputs(tmp)
    source = ModelSource(config, spec.pop("checkpoint"))
    rows = measure([source], on_batch=lambda row: row.update(peak_rss_mib=peak_rss_mib()), **spec)[0][0]
    worker_output(tmp, [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows])


# ------------------------------------------------------------------------------------------- benchmark
def _paired_speedup(ref: list[float], new: list[float]) -> float:
    """Median over repeats of the per-repeat ratio ref/new (robust to load drifting between repeats)."""
    return statistics.median(r / n for r, n in zip(ref, new, strict=True))


def _paired_quartiles(ref: list[float], new: list[float]) -> tuple[float, float]:
    """First and third quartiles of the per-repeat ratios ref/new (both the ratio for a single repeat)."""
    ratios = [r / n for r, n in zip(ref, new, strict=True)]
    if len(ratios) < 2:
        return ratios[0], ratios[0]
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return q1, q3


def _check_options(dtypes, batch_sizes, repeats, context, decode_tokens, runtimes) -> list[Runtime]:
    for name in dtypes:
        if name not in DTYPES:
            raise BenchConfigError(f"unknown dtype {name!r}; choose from {', '.join(DTYPES)}")
    if not batch_sizes or min(batch_sizes) < 1 or repeats < 1 or context < 1 or decode_tokens < 1:
        raise BenchConfigError("batch sizes, repeats, context and decode_tokens must be >= 1")
    if not runtimes:
        raise BenchConfigError("give at least one runtime, e.g. dynamic")
    parsed = [Runtime.parse(r) for r in runtimes]
    if len({r.name for r in parsed}) != len(parsed):
        raise BenchConfigError(f"runtimes listed twice: {[r.name for r in parsed]}")
    return parsed


def run_benchmark(
    config_or_name: PretrainedConfig | str = "tinyllama", ratio: float = 0.25, width: int | None = None, *,
    alignment: int | None = 64, compare_unaligned: bool = True, extra_widths: Sequence[int] = (),
    batch_sizes: Sequence[int] = (1, 4, 16), dtypes: Sequence[str] = ("float32",), context: int = 128,
    decode_tokens: int = 16, repeats: int = 3, warmup: int = 1, num_layers: int | None = None,
    device: str = "auto", threads: int | None = None, memory: bool = True, seed: int = 0,
    runtimes: Sequence[Runtime | str] = ("dynamic",), weights: str = "auto", floor: bool = True,
    interleave: str = "step", verbose: bool = True,
) -> list[dict[str, Any]]:  # fmt: skip
    """Benchmark the dense model against its pruned width(s); one row (COLUMNS) per dtype, runtime, variant
    and batch size.

    Variants: `dense`; `pruned` at `width` (default: `width_for_ratio(config, ratio, alignment)`);
    `unaligned` at the nearest widths that are multiples of num_attention_heads only (if
    `compare_unaligned`); `extra` at `extra_widths`. `runtimes`: e.g. ("dynamic", "static+compile"), the
    first is the baseline of `*_runtime_gain_cpu`. `weights`: "random", "real" or "auto" (real for the
    embedded smollm2-135m). `floor`: also time the floor model (`costs.floor_config`) for the honest
    ideal's fixed cost (without it F = 0). `interleave`: "step" or "generation" (see `measure`).
    `memory`: one extra pass per model for peak memory.
    """
    check_ratio(ratio)
    check_device(device)
    parsed_runtimes = _check_options(dtypes, batch_sizes, repeats, context, decode_tokens, runtimes)
    name = config_or_name if isinstance(config_or_name, str) else ""
    real = bool(name) and wants_real_weights(name, weights)
    if real and num_layers is not None:
        raise BenchConfigError("num_layers shortens random-weight models only; drop it for real weights")
    checkpoint = str(real_checkpoint(name)) if real else None
    config = resolve_config(checkpoint or config_or_name, num_layers)
    name = name or str(getattr(config, "name_or_path", "") or config.model_type)
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
    floor_source = [ModelSource(floor_config(config))] if floor else []
    with tempfile.TemporaryDirectory(prefix="pat_bench_real_") as tmp:
        rows: list[dict[str, Any]] = []
        for dtype in dtypes:
            sources = [ModelSource(c) for c in configs] + floor_source
            if real:
                paths = save_real_variants(checkpoint, [w for _, w in variants[1:]], tmp, DTYPES[dtype])
                sources = [ModelSource(c, str(p)) for c, p in zip(configs, paths, strict=True)] + floor_source
            kwargs = dict(
                dtype=dtype, batch_sizes=list(batch_sizes), context=context, decode_tokens=decode_tokens,
                device=device, seed=seed, threads=threads,
            )  # fmt: skip
            t0 = time.perf_counter()
            if verbose:
                widths = ", ".join(
                    f"{v} {c.hidden_size}" for (v, _), c in zip(variants, configs, strict=True)
                )
                print(
                    f"[bench] {name} ({config.num_hidden_layers} layers, {'real' if real else 'random'} "
                    f"weights) {dtype} on {device}: {widths}; runtimes "
                    f"{', '.join(r.name for r in parsed_runtimes)}", flush=True,
                )  # fmt: skip
            timed = measure(
                sources,
                runtimes=parsed_runtimes,
                repeats=repeats,
                warmup=warmup,
                interleave=interleave,
                **kwargs,
            )
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
            if verbose:
                print(f"[bench]   timing done in {time.perf_counter() - t0:.0f} s", flush=True)
            kwargs["runtimes"] = [parsed_runtimes[0].name]
            mems = [measure_memory(s, **kwargs) if memory else None for s in sources[: len(variants)]]
            if verbose and memory:
                print(f"[bench]   memory passes done in {time.perf_counter() - t0:.0f} s", flush=True)
            common = dict(
                model=name, weights="real" if real else "random", hidden_size=config.hidden_size,
                num_layers=config.num_hidden_layers, dtype=dtype, device=device, context=context,
                decode_tokens=decode_tokens, repeats=repeats,
            )  # fmt: skip
            rows += _result_rows(config, variants, parsed_runtimes, timed, mems, common, alignment, floor)
            del timed
    return rows


def _result_rows(
    config: PretrainedConfig, variants: list[tuple[str, int | None]], runtimes: list[Runtime],
    timed: list[list[list[dict[str, Any]]]], mems: list[list[dict[str, Any]] | None], common: dict[str, Any],
    alignment: int | None, floor: bool,
) -> list[dict[str, Any]]:  # fmt: skip
    """One COLUMNS row per variant, runtime and batch size: the measured times, speedups vs dense under
    the same runtime, ideals, the gain of each runtime over the first, and memory (first runtime only)."""
    rows = []
    for i, (variant, width) in enumerate(variants):
        cfg = config if width is None else shrunk_config(config, width)
        for j, runtime in enumerate(runtimes):
            for k, measured in enumerate(timed[i][j]):
                row = {c: "" for c in COLUMNS}
                row.update(measured, **common, variant=variant, runtime=runtime.name, width=cfg.hidden_size)
                row["aligned"] = bool(alignment) and cfg.hidden_size % alignment == 0
                if mems[i] and j == 0:
                    for key in ("peak_rss_mib", "peak_cuda_alloc_mib"):
                        row[key] = mems[i][k].get(key, "")
                row["est_weights_kv_mib"] = _estimated_mib(cfg, measured, common)
                floor_row = timed[-1][j][k] if floor else None
                row.update(_speedups(config, width, runtime, timed[0][j][k], measured, floor_row, common))
                first_runtime = timed[i][0][k]
                row["prefill_runtime_gain_cpu"] = _paired_speedup(
                    first_runtime["_ttft_cpu"], measured["_ttft_cpu"]
                )
                row["decode_runtime_gain_cpu"] = _paired_speedup(
                    first_runtime["_decode_cpu"], measured["_decode_cpu"]
                )
                rows.append(row)
    return rows


def _estimated_mib(cfg: PretrainedConfig, measured: dict[str, Any], common: dict[str, Any]) -> float:
    kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    length = common["context"] + common["decode_tokens"]
    kv_elems = 2 * cfg.num_hidden_layers * kv_heads * head_dim(cfg) * length * measured["batch_size"]
    return (measured["params"] + kv_elems) * DTYPES[common["dtype"]].itemsize / 2**20


def _speedups(
    config: PretrainedConfig, width: int | None, runtime: Runtime, dense: dict[str, Any], m: dict[str, Any],
    floor: dict[str, Any] | None, common: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """Measured speedups vs dense, the naive and honest ideals, and efficiencies, for one row.

    The honest ideal takes its times from process-CPU medians on a CPU (steady under load) and from wall
    medians on CUDA (where the work is not on this process's CPU)."""
    context, decode_tokens = common["context"], common["decode_tokens"]
    bs = m["batch_size"]
    out: dict[str, Any] = {
        "floor_ttft_cpu_ms": floor["ttft_cpu_ms"] if floor else "",
        "floor_decode_cpu_ms_per_step": floor["decode_cpu_ms_per_step"] if floor else "",
    }
    cpu = not common["device"].startswith("cuda")
    pruned_config = shrunk_config(config, width) if width else config
    for phase, key in (("prefill", "ttft"), ("decode", "decode")):
        out[f"{phase}_speedup"] = _paired_speedup(dense[f"_{key}"], m[f"_{key}"])
        out[f"{phase}_speedup_cpu"] = _paired_speedup(dense[f"_{key}_cpu"], m[f"_{key}_cpu"])
        q1, q3 = _paired_quartiles(dense[f"_{key}_cpu"], m[f"_{key}_cpu"])
        out[f"{phase}_speedup_cpu_q1"], out[f"{phase}_speedup_cpu_q3"] = q1, q3
        out[f"{phase}_speedup_best"] = min(dense[f"_{key}"]) / min(m[f"_{key}"])
        if phase == "prefill":
            work = [honest_prefill_flops(c, context, bs)["total"] for c in (config, pruned_config)]
        else:
            kv = dict(cache=runtime.cache, expanded_kv=runtime.expanded_kv)
            work = [
                honest_decode_elements(c, context, bs, decode_tokens, **kv)["total"]
                for c in (config, pruned_config)
            ]
        samples = f"_{key}_cpu" if cpu else f"_{key}"
        dense_time = statistics.median(dense[samples])
        floor_time = statistics.median(floor[samples]) if floor else 0.0
        naive = naive_speedup(config, width, context, bs, decode_tokens)[phase] if width else 1.0
        honest = honest_speedup(work[0], work[1], dense_time, floor_time)
        out[f"{phase}_speedup_ideal"] = naive
        out[f"{phase}_speedup_ideal_honest"] = honest
        for suffix, measured in (("", out[f"{phase}_speedup"]), ("_cpu", out[f"{phase}_speedup_cpu"])):
            out[f"{phase}_efficiency{suffix}"] = measured / naive
            out[f"{phase}_efficiency_honest{suffix}"] = measured / honest
    return out


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
    runtimes=("dynamic",),
    weights="auto",
    floor=True,
    interleave="step",
    out="artifacts/bench",
)


if __name__ == "__main__":  # the fresh-process memory worker (see common.in_fresh_process)
    if sys.argv[1:2] != ["--worker"]:
        sys.exit("run the benchmark with `pat-lite bench ...`")
    _worker(sys.argv[2])
