"""Why a PAT run ended where it did: what its mask chose, when, and what tuning moved (issue 9 diagnostics).

From a finished PAT run folder (pat_lite.training.run) and its base model:

- **lock-in**: per channel, the first logged step from which its keep/cut decision (W_M > 0) never changes
  again — compared with s0 and, for the released schedule, 0.8·s0 where the task loss stops moving W_M;
- **overlap** of PAT's kept set with the norm criterion's set (docs/method.md §2) and with the channels
  that carry the most of the residual stream on calibration text (the diagonal of the second moment that
  the PCA baseline diagonalises), and whether any of the channels with the largest activations was cut;
- **Spearman rank correlation** of the final W_M with the writer norms;
- **the train/eval gap**: LM loss of the same batch under the soft and the exact mask, per logging step;
- **update sizes**: ‖ΔW‖/‖W‖ of the LoRA update per projection type, ‖L1·L0‖_F / √d and mean |s − 1| per HSM.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from pat_lite.core.mask import kept_channels
from pat_lite.core.residual import Calibration, rotate_residual, visit_residual_reads
from pat_lite.core.slicing import norm_channels, writer_norms
from pat_lite.reproduce.methods import method_label
from pat_lite.training.trainer import MASK_HISTORY, PAT_STATE, load_mask_history


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's ρ: the Pearson correlation of the ranks (ties broken by position; fine for floats)."""
    ranks = [torch.argsort(torch.argsort(x.double())).double() for x in (a, b)]
    centred = [r - r.mean() for r in ranks]
    return float((centred[0] @ centred[1]) / (centred[0].norm() * centred[1].norm()))


def lock_in_steps(steps: torch.Tensor, proxies: torch.Tensor) -> torch.Tensor:
    """Per channel, the first logged step from which `proxies > 0` equals its final value at every later
    logged step (the step of the first snapshot if it never changed)."""
    decisions = proxies > 0
    settled = decisions == decisions[-1]
    # Walk back from the end: a channel is locked at snapshot t if it is settled at t and at every later one.
    locked_from = torch.full((proxies.shape[1],), len(steps) - 1, dtype=torch.long)
    still = torch.ones(proxies.shape[1], dtype=torch.bool)
    for t in range(len(steps) - 1, -1, -1):
        still &= settled[t]
        locked_from[still] = t
    return steps[locked_from]


def residual_channel_stats(model, calibration: Calibration) -> dict[str, torch.Tensor]:
    """Per channel over every read site and token: `energy` (Σ h_i²/‖h‖², the second moment's diagonal the
    PCA baseline uses) and `max_abs` (the largest |h_i| seen)."""
    width = int(model.config.hidden_size)
    energy = torch.zeros(width, dtype=torch.float64)
    max_abs = torch.zeros(width, dtype=torch.float64)

    def visit(states: torch.Tensor) -> None:
        states = states.double().cpu()
        energy.add_((states / states.norm(dim=-1, keepdim=True).clamp_min(1e-30)).pow(2).sum(0))
        max_abs.copy_(torch.maximum(max_abs, states.abs().amax(0)))

    visit_residual_reads(model, calibration, visit)
    return {"energy": energy, "max_abs": max_abs}


def update_sizes(run_dir: Path, base_model) -> dict[str, Any]:
    """LoRA ‖scale·B·A‖_F / ‖W‖_F averaged per projection type, and per-HSM low-rank size and scale drift."""
    adapter = run_dir / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    scaling = config["lora_alpha"] / config["r"]
    lora = load_file(str(adapter / "adapter_model.safetensors"))
    weights = dict(base_model.named_parameters())
    per_type: dict[str, list[float]] = defaultdict(list)
    for key, a in lora.items():
        if ".lora_A." not in key:
            continue
        b = lora[key.replace(".lora_A.", ".lora_B.")]
        module = key.split("base_model.model.", 1)[-1].split(".lora_A.")[0]
        base = weights[f"{module}.weight"].detach().float()
        per_type[module.rsplit(".", 1)[-1]].append(
            float((scaling * b.float() @ a.float()).norm() / base.norm())
        )
    lora_sizes = {name: sum(v) / len(v) for name, v in sorted(per_type.items())}
    hsm: dict[str, dict[str, float]] = {}
    state_file = adapter / PAT_STATE
    if state_file.is_file():
        state = load_file(str(state_file))
        names = sorted({k.split(".")[1] for k in state if k.startswith("hsms.")})
        for name in names:
            low_rank = state[f"hsms.{name}.L1"].float() @ state[f"hsms.{name}.L0"].float()
            scale = state[f"hsms.{name}.scale"].float()
            hsm[name] = {
                "low_rank": float(low_rank.norm() / math.sqrt(low_rank.shape[0])),
                "scale_drift": float((scale - 1).abs().mean()),
            }
    return {"lora": lora_sizes, "hsm": hsm}


def diagnose(run_dir: str | Path, base_model, calibration: Calibration, top_activations: int = 8) -> dict:
    """Every diagnostic of one PAT run (see the module docstring) as plain numbers and lists."""
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "train_summary.json").read_text())
    kept_record = json.loads((run_dir / "merged" / "pat_kept.json").read_text())
    target = len(kept_record["kept_channels"])
    pat_config = kept_record.get("pat_config", {})
    steps, proxies = load_mask_history(run_dir / MASK_HISTORY)
    if proxies.shape[0] == 0:  # a run shorter than its logging interval: only the final mask exists
        proxies = load_file(str(run_dir / "adapter" / PAT_STATE))["mask.proxies"][None].float()
        steps = torch.tensor([int(summary.get("steps") or 0)])
    final = proxies[-1]
    kept = set(kept_channels(final, target).tolist())
    pat_state = load_file(str(run_dir / "adapter" / PAT_STATE))
    if "rotation" in pat_state:  # PAT in the PCA basis: channels are directions of the rotated base
        base_model = rotate_residual(base_model, pat_state["rotation"].double())
    stats = residual_channel_stats(base_model, calibration)
    energy_set = set(torch.argsort(-stats["energy"])[:target].tolist())
    loudest = torch.argsort(-stats["max_abs"])[:top_activations].tolist()
    norm_set = set(norm_channels(base_model, target).tolist())
    log = json.loads((run_dir / "log_history.json").read_text())
    gap_rows = [e for e in log if "lm_loss_exact" in e]
    locks = lock_in_steps(steps, proxies)
    milestone = logged_milestone(run_dir)
    return {
        "width": int(final.numel()),
        "target": target,
        "milestone": milestone,
        **after_milestone(steps, proxies, target, milestone),
        "schedule": pat_config.get("schedule", "released"),
        "freeze_fraction": pat_config.get("mask_freeze_fraction", 0.8),
        "steps": summary.get("steps"),
        "lock_in": {"logged_steps": steps.tolist(), "per_channel": locks.tolist()},
        "kept": sorted(kept),
        "overlap_norm": len(kept & norm_set) / target,
        "overlap_energy": len(kept & energy_set) / target,
        "largest_activation_channels": loudest,
        "largest_activation_channels_cut": [c for c in loudest if c not in kept],
        "spearman_wm_vs_writer_norm": rank_correlation(final, writer_norms(base_model)),
        "gap": {
            "step": [e["step"] for e in gap_rows],
            "soft": [e["lm_loss_soft"] for e in gap_rows],
            "exact": [e["lm_loss_exact"] for e in gap_rows],
        },
        "updates": update_sizes(run_dir, base_model),
    }


def logged_milestone(run_dir: Path) -> int | None:
    """The run's s0 as its log recorded it (None for a schedule without one)."""
    log = json.loads((Path(run_dir) / "log_history.json").read_text())
    return next((e["milestone"] for e in log if "milestone" in e), None)


def kept_at_milestone(
    steps: torch.Tensor, proxies: torch.Tensor, target: int, milestone: int | None
) -> tuple[int, set[int]] | None:
    """The first logged step at or after s0 and the channels kept there — the set the paper's Eq. 6 treats
    as fixed from s0 on (None without s0 or a log after it)."""
    if milestone is None:
        return None
    after = [i for i, step in enumerate(steps.tolist()) if step >= milestone]
    if not after:
        return None
    return int(steps[after[0]]), set(kept_channels(proxies[after[0]], target).tolist())


def after_milestone(steps: torch.Tensor, proxies: torch.Tensor, target: int, milestone) -> dict[str, Any]:
    """What happened to the mask around s0, read at log resolution: how far W_M had moved by the last log
    before s0 (max |W_M|), the first logged step at or after s0, and how many keep/cut decisions changed
    between that log and the end."""
    if milestone is None or proxies.shape[0] == 0:
        return {"max_abs_wm_before_s0": None, "first_log_after_s0": None, "decisions_changed_after_s0": None}
    before = [i for i, step in enumerate(steps.tolist()) if step < milestone]
    at_s0 = kept_at_milestone(steps, proxies, target, milestone)
    changed = None
    if at_s0:
        changed = len(at_s0[1] ^ set(kept_channels(proxies[-1], target).tolist())) // 2
    return {
        "max_abs_wm_before_s0": float(proxies[before[-1]].abs().max()) if before else None,
        "first_log_after_s0": at_s0[0] if at_s0 else None,
        "decisions_changed_after_s0": changed,
    }


def plot_diagnostics(diag: dict, title: str = ""):
    """Four panels: lock-in (share of channels decided by step), the train/eval gap, W_M's overlap with
    the norm and energy sets, and the update sizes. Returns a matplotlib Figure (no pyplot state)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(16, 3.8))
    lock, gap, overlap, updates = fig.subplots(1, 4)
    per_channel = sorted(diag["lock_in"]["per_channel"])
    lock.plot(per_channel, [(i + 1) / len(per_channel) for i in range(len(per_channel))])
    if diag["milestone"]:
        lock.axvline(diag["milestone"], color="grey", ls="--", label="s0")
        if diag["schedule"] == "released":
            lock.axvline(diag["freeze_fraction"] * diag["milestone"], color="grey", ls=":", label="0.8·s0")
        lock.legend(fontsize=8)
    lock.set(
        title="channels whose decision is final", xlabel="step", ylabel="share of channels", ylim=(0, 1.02)
    )
    gap.plot(diag["gap"]["step"], diag["gap"]["soft"], label="soft mask (training)")
    gap.plot(diag["gap"]["step"], diag["gap"]["exact"], label="exact 0/1 mask (evaluation)")
    gap.set(title="LM loss of the same batch", xlabel="step", ylabel="loss")
    gap.legend(fontsize=8)
    names = ["norm set", "energy set", "chance"]
    values = [diag["overlap_norm"], diag["overlap_energy"], diag["target"] / diag["width"]]
    overlap.bar(names, values, color=["tab:blue", "tab:green", "lightgrey"])
    overlap.set(title=f"share of PAT's kept channels also in…  (ρ={diag['spearman_wm_vs_writer_norm']:.2f})",
                ylim=(0, 1))  # fmt: skip
    lora = diag["updates"]["lora"]
    updates.bar(list(lora), list(lora.values()), color="tab:purple")
    updates.set(title="LoRA ‖ΔW‖/‖W‖ by projection", ylabel="relative size")
    updates.tick_params(axis="x", labelrotation=45, labelsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def summary_row(diag: dict) -> dict[str, Any]:
    """The few numbers of one run's diagnostics that a table can carry."""
    locks = sorted(diag["lock_in"]["per_channel"])
    gap = diag["gap"]
    return {
        "overlap_norm": diag["overlap_norm"],
        "overlap_energy": diag["overlap_energy"],
        "chance_overlap": diag["target"] / diag["width"],
        "spearman_wm_vs_writer_norm": diag["spearman_wm_vs_writer_norm"],
        "largest_activation_channels_cut": len(diag["largest_activation_channels_cut"]),
        "median_lock_in_step": locks[len(locks) // 2],
        "milestone": diag["milestone"],
        "max_abs_wm_before_s0": diag.get("max_abs_wm_before_s0"),
        "decisions_changed_after_s0": diag.get("decisions_changed_after_s0"),
        "final_loss_soft": gap["soft"][-1] if gap["soft"] else None,
        "final_loss_exact": gap["exact"][-1] if gap["exact"] else None,
    }


def diagnostics_markdown(diagnostics: dict[str, dict]) -> list[str]:
    """Markdown lines: one row per diagnosed method (the first seed's run at the main ratio and steps).
    Lock-in and the changes after s0 are read at log resolution (W_M is logged every `logging_steps`)."""
    lines = [
        "| method | kept ∩ norm set | kept ∩ energy set | chance | ρ(W_M, writer norm) | top-8 activation "
        "channels cut | max \\|W_M\\| before s0 | median lock-in: first log after which final (s0) | "
        "decisions changed after s0 | LM loss soft → exact mask, last log |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for method, diag in diagnostics.items():
        s = summary_row(diag)
        soft, exact = s["final_loss_soft"], s["final_loss_exact"]
        gap = "–" if soft is None else f"{soft:.2f} → {exact:.2f}"
        overlaps = [f"{s[k]:.0%}" for k in ("overlap_norm", "overlap_energy", "chance_overlap")]
        travel = "–" if s["max_abs_wm_before_s0"] is None else f"{s['max_abs_wm_before_s0']:.3f}"
        changed = "–" if s["decisions_changed_after_s0"] is None else str(s["decisions_changed_after_s0"])
        s0 = "no s0" if s["milestone"] is None else f"{s['milestone']:g}"  # a fixed mask has no s0
        lines.append(
            f"| {method_label(method)} | {' | '.join(overlaps)} | {s['spearman_wm_vs_writer_norm']:.2f} | "
            f"{s['largest_activation_channels_cut']} | {travel} | {s['median_lock_in_step']} "
            f"({s0}) | {changed} | {gap} |"
        )
    return lines
