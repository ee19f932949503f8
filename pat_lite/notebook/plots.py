"""What notebooks 02-05 show of a training run: its log as plots and as a table a reader can take in, what
the losses did and why (`describe_training_log`), the mask proxies W_M over the steps (`MaskRecorder`,
`plot_mask_history`), and a sentence on where the mask ended (`mask_outcome`)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from transformers import TrainerCallback

from pat_lite.core.attach import get_pat
from pat_lite.core.config import PATConfig
from pat_lite.core.mask import SCHEDULES, GlobalMask, gate_offset, schedule_temperature

# ------------------------------------------------------------------------------------- the two schedules
#: How notebook 01 draws the schedules: (label, line style).
SCHEDULE_STYLES = {"paper": ("paper's Eq. 6", "-"), "released": ("released code", "--")}


def gate_values(proxies, steps: list[int], milestone: int, schedule: str):
    """M as training sees it, for fixed proxies W_M (1-D tensor) at each step: rows = steps, columns =
    channels. Computed by `GlobalMask.training_mask` with the given schedule; its exact mask keeps the
    channels with W_M > 0 (the target is their count)."""
    import torch

    mask = GlobalMask(len(proxies), target=int((proxies > 0).sum()), schedule=schedule)
    with torch.no_grad():
        mask.proxies.copy_(proxies)
    mask.milestone = milestone
    mask.train()
    rows = []
    for step in steps:
        mask.step = step
        rows.append(mask.training_mask().detach().clone())
    return torch.stack(rows)


def plot_schedules(milestone: int, channel: float = 0.05, after: float = 1.2):
    """The two schedules side by side (docs/method.md §4), four panels: τ(s) (log axis), β(s), the gate of
    two channels with W_M = ±`channel` over the steps, and the gate as a function of W_M at `after` · s0:
    what the model sees for the rest of training."""
    import numpy as np
    import torch
    from matplotlib.figure import Figure

    progress = np.linspace(0.0, after, 241)
    steps = [round(p * milestone) for p in progress]
    fig = Figure(figsize=(11, 7))
    (tau, beta), (channels, curve) = fig.subplots(2, 2)
    w_axis = torch.linspace(-0.5, 0.5, 201)
    default = PATConfig().schedule
    for schedule in sorted(SCHEDULES, key=lambda name: name != default):  # the default first
        label, style = SCHEDULE_STYLES[schedule]
        label += " (the default)" if schedule == default else ""
        tau.semilogy(
            progress, [schedule_temperature(s, milestone, schedule) for s in steps], style, label=label
        )
        values = gate_values(torch.tensor([channel, -channel]), steps, milestone, schedule)
        for i, colour in ((0, "tab:blue"), (1, "tab:red")):
            channels.plot(progress, values[:, i], style, color=colour,
                          label=f"{label}, W_M = {[channel, -channel][i]:+.2f}")  # fmt: skip
        late = gate_values(w_axis, [round(after * milestone)], milestone, schedule)[0]
        curve.plot(w_axis, late, style, label=label)
    beta.plot(progress, [gate_offset(s, milestone) for s in steps], color="tab:orange")
    for ax in (tau, beta, channels):
        ax.axvline(1.0, color="black", lw=0.8)
        ax.axvline(0.8, color="grey", ls=":", lw=1)
        ax.set_xlabel("training progress s / s0 (dotted: 0.8 s0, solid: s0)")
    tau.set_title("temperature τ(s): frozen at 0.8 s0 (released) or 1/ε from s0 (paper)")
    beta.set_title("offset β(s), the same in both: 0 from s0 / 2")
    channels.set_title("the gate M of two channels over the steps")
    curve.set_title(f"what training sees after s0: M against W_M at s = {after:g} s0")
    curve.set_xlabel("proxy weight W_M")
    for ax in (tau, channels, curve):
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def training_log_rows(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-logging-step entries of `TrainResult.log_history` (not the final summary line)."""
    return [entry for entry in log_history if "loss" in entry and "step" in entry]


def plot_training_log(log_history: list[dict[str, Any]], target_width: int | None = None):
    """Four panels, two by two: every loss term (log scale), active channels against the target, the gate
    schedule (τ on the left axis, log scale when it spans more than a factor 20, β on its own fixed
    [0, 0.5] axis), and the train/eval gap — the LM loss of one batch under the soft (training) mask and
    under the exact 0/1 mask evaluation uses. Returns a bare matplotlib Figure; a plain LoRA log fills the
    first panel only."""
    from matplotlib.figure import Figure  # not pyplot: the caller decides where the figure goes

    rows = training_log_rows(log_history)
    steps = [row["step"] for row in rows]

    def series(key: str) -> list[float] | None:
        return [row[key] for row in rows] if rows and all(key in row for row in rows) else None

    fig = Figure(figsize=(11, 7))
    (losses, channels), (schedule, gap) = fig.subplots(2, 2)
    for key, label in (("loss", "total"), ("lm_loss", "instruction"), ("sparsity_loss", "sparsity"),
                       ("identity_loss", "identity")):  # fmt: skip
        if (values := series(key)) is not None:
            losses.plot(steps, values, marker=".", label=label)
    losses.set_yscale("log")
    losses.set_title("losses")
    losses.legend(fontsize=8)
    if (active := series("active_channels")) is not None:
        channels.plot(steps, active, marker=".")
        if target_width is not None:
            channels.axhline(target_width, color="grey", ls="--", label=f"target {target_width}")
            channels.legend(fontsize=8)
    channels.set_title("active channels (W_M > 0)")
    if (tau := series("tau")) is not None:
        schedule.plot(steps, tau, marker=".")
        schedule.set_ylabel("temperature τ", color="tab:blue")
        if max(tau) > 20 * min(tau):  # tau grows towards 1/1e-6 near s0 in long runs
            schedule.set_yscale("log")
        offset = schedule.twinx()
        offset.plot(steps, series("beta"), color="tab:orange", marker=".")
        offset.set_ylim(-0.02, 0.52)  # beta runs from 0.5 down to 0: a flat 0 should look like one
        offset.set_ylabel("offset β", color="tab:orange")
        offset.grid(False)
    schedule.set_title("gate schedule: τ (blue, left axis), β (orange, right axis)")
    if (soft := series("lm_loss_soft")) is not None:
        gap.plot(steps, soft, marker=".", label="soft mask (training)")
        gap.plot(steps, series("lm_loss_exact"), marker=".", label="exact 0/1 mask (evaluation)")
        gap.set_yscale("log")
        gap.legend(fontsize=8)
    gap.set_title("train/eval gap: LM loss of one batch under both masks")
    for ax in (losses, channels, schedule, gap):
        ax.set_xlabel("step")
    fig.tight_layout()
    return fig


#: The log's columns a reader needs, with plain names (and how many significant digits each shows).
LOG_COLUMNS: dict[str, tuple[str, str]] = {
    "step": ("step", "{:.0f}"),
    "loss": ("total loss", "{:.3g}"),
    "lm_loss": ("instruction loss", "{:.3g}"),
    "sparsity_loss": ("sparsity loss", "{:.3g}"),
    "identity_loss": ("identity loss", "{:.3g}"),
    "active_channels": ("channels with W_M > 0", "{:.0f}"),
    "tau": ("τ", "{:.3g}"),
    "beta": ("β", "{:.2f}"),
    "learning_rate": ("learning rate", "{:.1e}"),
    "lm_loss_soft": ("LM loss, soft mask", "{:.3g}"),
    "lm_loss_exact": ("LM loss, exact mask", "{:.3g}"),
}


def training_log_table(log_history: list[dict[str, Any]], last: int | None = None):
    """The per-step log (the last `last` logged steps) as a table of formatted strings: plain column names,
    three significant digits, the learning rate in scientific notation (3.0e-04, not a rounded 0.0003)."""
    import pandas as pd

    rows = training_log_rows(log_history)[-last if last else None :]
    table = {
        label: [fmt.format(row[key]) for row in rows]
        for key, (label, fmt) in LOG_COLUMNS.items()
        if rows and all(key in row for row in rows)
    }
    return pd.DataFrame(table).set_index("step")


def describe_training_log(log_history: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    """What the losses did from the first to the last logged step and why, in a few sentences (Markdown),
    computed from the log: the train/eval gap before s0, the exact mask from s0 on (paper schedule), and
    what the count term of the sparsity loss says about the mask."""
    rows = training_log_rows(log_history)
    if not rows or "sparsity_loss" not in rows[0]:
        return "A LoRA run: its loss is the instruction loss alone."
    first, last = rows[0], rows[-1]
    target, width, active = summary["target_width"], summary["hidden_size"], summary["active_channels"]
    terms = ", ".join(
        f"{name} {first[key]:.2f} → {last[key]:.2f}"
        for key, name in (
            ("lm_loss", "instruction"),
            ("sparsity_loss", "sparsity"),
            ("identity_loss", "identity"),
        )
    )
    text = [
        f"The total loss went from {first['loss']:.2f} at step {first['step']} to {last['loss']:.2f} at "
        f"step {last['step']} ({terms})."
    ]
    exact = [row for row in rows if row.get("tau", 0) >= 1e5]  # τ = 1/ε: the paper's schedule after s0
    if exact and "lm_loss_exact" in first:
        cut = f"{1 - target / width:.0%}".replace("%", " %")
        text.append(
            f"At step {first['step']} one batch scored {first['lm_loss_soft']:.2f} under the soft mask "
            f"training saw and {first['lm_loss_exact']:.2f} under the exact 0/1 mask (a {cut} cut). From "
            f"the milestone s0 = {exact[0]['milestone']:.0f} on (the log's step {exact[0]['step']}), the "
            "paper's schedule trains under the exact mask, so the instruction loss becomes the cut "
            "model's: it jumps, and the steps after s0 tune the cut model."
        )
    if active == target:
        text.append(
            f"The count of channels with W_M > 0 reached the target, {target} of {width}; what is left of "
            "the sparsity loss is the pull of every W_M towards ±0.5."
        )
        return " ".join(text)
    text.append(
        "The sparsity loss is 10·|count − N|/N plus the pulls of W_M to ±0.5 (docs/method.md §5). At step "
        "0 every W_M is 0 and the straight-through count sees all channels open; the count term then "
        f"moves every W_M down alike. After {last['step']} steps {active} channels have W_M > 0 against "
        f"the target {target}, so the count term alone is 10·|{active} − {target}|/{target} = "
        f"{10 * abs(active - target) / target:.1f}."
    )
    if "mask_travel_budget" in last:
        text.append(
            "Only the task loss tells channels apart, and in this run W_M can travel about "
            f"{last['mask_travel_budget']:.1e} while it listens (the sum of its learning rate over those "
            "steps, docs/method.md §10): too little to sort the channels."
        )
    return " ".join(text)


def mask_outcome(summary: dict[str, Any]) -> str:
    """One sentence on where a PAT run's mask ended (`TrainResult.summary`), for the page instead of the
    merge's warning: a short run may stop before the count term has settled Σ 1(W_M > 0) on the target."""
    if "target_width" not in summary:
        return "A LoRA run: no mask, the model keeps its full width."
    active, target, width = summary["active_channels"], summary["target_width"], summary["hidden_size"]
    if active == target:
        return f"The mask kept exactly the target: {active} of {width} channels have W_M > 0."
    return (
        f"The mask ended with {active} channels above zero, not the target {target}: {summary['steps']} "
        "steps were too few for the sparsity loss to settle the count. The merge keeps the "
        f"{target} channels with the largest W_M, the same ones the tuned model uses in evaluation mode, "
        "so it is still exact."
    )


@contextmanager
def quiet_mask_count_warning() -> Iterator[None]:
    """Hide the merge's "the trained mask keeps N channels, not the target" warning inside the block; the
    notebook says the same with `mask_outcome` as a sentence on the page instead of a warning box."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="the trained mask keeps", category=UserWarning)
        yield


class MaskRecorder(TrainerCallback):
    """Copies W_M after every optimizer step, for `plot_mask_history` (read-only: changes nothing in
    training; the checkpoints hold W_M too, under `mask.proxies` of pat_state.safetensors)."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.proxies: list[Any] = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.steps.append(state.global_step)
        self.proxies.append(get_pat(model).mask.proxies.detach().float().cpu().clone())


def plot_mask_history(steps: list[int], proxies: list[Any], bins: int = 60, shown: int = 64, seed: int = 0):
    """Two panels: the histogram of W_M at every step (colour: log(1 + count)), and the W_M trajectories
    of `shown` random channels, blue if the channel is kept at the end (W_M > 0), red if it is dropped."""
    import numpy as np
    import torch
    from matplotlib.figure import Figure

    history = torch.stack(list(proxies)).numpy()  # (steps, d)
    span = 1.05 * max(float(np.abs(history).max()), 1e-3)
    edges = np.linspace(-span, span, bins + 1)
    heat = np.stack([np.histogram(row, bins=edges)[0] for row in history], axis=1)
    kept = history[-1] > 0
    fig = Figure(figsize=(14, 4))
    left, right = fig.subplots(1, 2)
    image = left.imshow(np.log1p(heat), aspect="auto", origin="lower", cmap="viridis",
                        extent=(steps[0], steps[-1], edges[0], edges[-1]))  # fmt: skip
    left.set_title("histogram of W_M over the steps (colour: log(1 + channels))")
    left.set_xlabel("training step")
    left.set_ylabel("W_M")
    left.grid(False)
    fig.colorbar(image, ax=left)
    chosen = np.random.default_rng(seed).choice(
        history.shape[1], size=min(shown, history.shape[1]), replace=False
    )
    for i in chosen:
        right.plot(steps, history[:, i], lw=0.7, alpha=0.6, color="tab:blue" if kept[i] else "tab:red")
    right.axhline(0, color="black", lw=0.5)
    right.set_title(f"W_M of {len(chosen)} channels (blue: kept, red: dropped)")
    right.set_xlabel("training step")
    fig.tight_layout()
    return fig
