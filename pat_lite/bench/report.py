"""What `pat-lite bench` shows: a plain-text summary table and a four-panel PNG of its rows."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Panel titles of the memory column the figure shows (the first one the rows have values for).
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
    """TTFT vs batch size, measured vs naive and honest ideal speedups, and memory (measured peak, or the
    weights + KV-cache estimate when no peak was measured); one panel each, two by two, every value axis
    starting at zero so that bar-like comparisons read true."""
    # A bare Figure draws without pyplot, so the caller's backend (e.g. a notebook's inline) is untouched.
    import matplotlib
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 8))
    axes = fig.subplots(2, 2).flatten()
    series: dict[tuple[str, str, str, int], list[dict[str, Any]]] = {}
    for r in rows:
        series.setdefault((r["dtype"], r.get("runtime", ""), r["variant"], r["width"]), []).append(r)
    markers = {"float32": "o", "bfloat16": "s", "float16": "^"}
    palette = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    colours: dict[tuple[str, str, int], str] = {}
    cuda = any(r.get("peak_cuda_alloc_mib") not in ("", None) for r in rows)
    mem_col = "peak_cuda_alloc_mib" if cuda else "peak_rss_mib"
    if all(r.get(mem_col) in ("", None) for r in rows):
        mem_col = "est_weights_kv_mib"
    for (dtype, runtime, variant, width), rs in series.items():
        rs = sorted(rs, key=lambda r: r["batch_size"])
        bs = [r["batch_size"] for r in rs]
        colour = colours.setdefault((runtime, variant, width), palette[len(colours) % len(palette)])
        label = f"{variant} {width} {dtype}" + (f" {runtime}" if runtime else "")
        style = dict(color=colour, marker=markers.get(dtype, "o"), label=label)
        axes[0].plot(bs, [r["ttft_ms"] for r in rs], "-", **style)
        mem = [
            (b, float(r[mem_col])) for b, r in zip(bs, rs, strict=True) if r.get(mem_col) not in ("", None)
        ]
        if mem:
            axes[3].plot(*zip(*mem, strict=True), "-", **style)
        if variant != "dense":
            for ax, key in ((axes[1], "prefill"), (axes[2], "decode")):
                ax.plot(bs, [r[f"{key}_speedup"] for r in rs], "-", **style)
                if rs[0]["device"] == "cpu":
                    ax.plot(bs, [r[f"{key}_speedup_cpu"] for r in rs], "--", color=colour, marker="x")
                # marker "_" keeps an ideal visible when there is a single batch size (no line to draw)
                ideal = dict(color=colour, alpha=0.7, marker="_", markersize=14)
                ax.plot(bs, [r[f"{key}_speedup_ideal"] for r in rs], ":", **ideal)
                if rs[0].get(f"{key}_speedup_ideal_honest") not in ("", None):
                    ax.plot(bs, [r[f"{key}_speedup_ideal_honest"] for r in rs], "-.", **ideal)
    titles = ["time to first token (ms)", "prefill speedup vs dense", "decode speedup vs dense",
              MEMORY_TITLES[mem_col]]  # fmt: skip
    for ax in axes[1:3]:
        ax.plot([], [], "k-", label="wall time")
        if any(r["device"] == "cpu" for r in rows):
            ax.plot([], [], "k--", marker="x", label="CPU time")
        ax.plot([], [], "k:", label="naive ideal")
        ax.plot([], [], "k-.", label="honest ideal")
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
    for ax in axes:
        ax.set_ylim(0, 1.15 * ax.get_ylim()[1])
    axes[0].legend(fontsize=7)
    if rows:
        r = rows[0]
        weights = f", {r['weights']} weights" if r.get("weights") else ""
        fig.suptitle(
            f"{r['model']} ({r['num_layers']} layers{weights}), context {r['context']}, {r['device']}"
        )
    fig.tight_layout()
    return fig


def format_summary(rows: Sequence[dict[str, Any]]) -> str:
    """Plain-text table: TTFT, decode per step, measured speedups vs the naive and honest ideals, memory."""
    head = (
        f"{'dtype':8} {'runtime':22} {'variant':9} {'width':>5} {'bs':>3} | {'TTFT ms':>8} {'x cpu':>6} "
        f"{'naive':>6} {'honest':>6} {'eff':>5} | {'ms/tok':>7} {'floor':>6} {'x wall':>6} {'x cpu':>6} "
        f"{'q1-q3':>11} {'naive':>6} {'honest':>6} {'eff':>5} {'gain':>5} | {'mem MiB':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        mem = next((r[c] for c in ("peak_cuda_alloc_mib", "peak_rss_mib") if r.get(c) not in ("", None)), "")
        mem_s = f"{mem:8.0f}" if mem != "" else f"~{r['est_weights_kv_mib']:7.0f}"
        floor = r.get("floor_decode_cpu_ms_per_step", "")
        floor_s = f"{floor:6.2f}" if floor != "" else f"{'-':>6}"
        lines.append(
            f"{r['dtype']:8} {r.get('runtime', ''):22} {r['variant']:9} {r['width']:5d} "
            f"{r['batch_size']:3d} | "
            f"{r['ttft_ms']:8.1f} {r['prefill_speedup_cpu']:6.3f} {r['prefill_speedup_ideal']:6.3f} "
            f"{r['prefill_speedup_ideal_honest']:6.3f} {r['prefill_efficiency_honest_cpu']:5.1%} | "
            f"{r['decode_ms_per_step']:7.2f} {floor_s} {r['decode_speedup']:6.3f} "
            f"{r['decode_speedup_cpu']:6.3f} "
            f"{r['decode_speedup_cpu_q1']:5.3f}-{r['decode_speedup_cpu_q3']:5.3f} "
            f"{r['decode_speedup_ideal']:6.3f} {r['decode_speedup_ideal_honest']:6.3f} "
            f"{r['decode_efficiency_honest_cpu']:5.1%} {r['decode_runtime_gain_cpu']:5.2f} | {mem_s}"
        )
    lines.append(
        "x wall / x cpu: median of paired per-repeat wall / process-CPU time ratios vs dense (CPU time is\n"
        "steady when other jobs share the CPU); q1-q3: quartiles of the decode CPU-time ratios; naive\n"
        "ideal: matmul FLOP ratio (prefill), weight+KV element ratio (decode); honest ideal: every term\n"
        "incl. what does not shrink, plus the floor model's fixed cost (floor: its CPU ms per decode step);\n"
        "eff: x cpu / honest; gain: this runtime's speed vs the first runtime on the same model (CPU time);\n"
        "mem: peak (~ = estimate: parameter + KV bytes)"
    )
    return "\n".join(lines)
