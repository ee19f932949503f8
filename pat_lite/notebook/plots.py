"""What notebooks 02-05 show of a training run: its log as plots, the mask proxies W_M over the steps
(`MaskRecorder`, `plot_mask_history`), and a sentence on where the mask ended (`mask_outcome`)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from transformers import TrainerCallback

from pat_lite.core.attach import get_pat


def training_log_rows(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-logging-step entries of `TrainResult.log_history` (not the final summary line)."""
    return [entry for entry in log_history if "loss" in entry and "step" in entry]


def plot_training_log(log_history: list[dict[str, Any]], target_width: int | None = None):
    """Four panels: every loss term (log scale), active channels against the target, the gate schedule
    (τ on the left axis, log scale when it spans more than a factor 20, β on its own fixed [0, 0.5] axis),
    and the train/eval gap — the LM loss of one batch under the soft (training) mask and under the exact
    0/1 mask evaluation uses. Returns a bare matplotlib Figure; a plain LoRA log fills the first panel
    only."""
    from matplotlib.figure import Figure  # not pyplot: the caller decides where the figure goes

    rows = training_log_rows(log_history)
    steps = [row["step"] for row in rows]

    def series(key: str) -> list[float] | None:
        return [row[key] for row in rows] if rows and all(key in row for row in rows) else None

    fig = Figure(figsize=(20, 3.6))
    losses, channels, schedule, gap = fig.subplots(1, 4)
    for key in ("loss", "lm_loss", "sparsity_loss", "identity_loss"):
        if (values := series(key)) is not None:
            losses.plot(steps, values, marker=".", label=key)
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
        schedule.set_ylabel("temperature tau", color="tab:blue")
        if max(tau) > 20 * min(tau):  # tau grows towards 1/1e-6 near s0 in long runs
            schedule.set_yscale("log")
        offset = schedule.twinx()
        offset.plot(steps, series("beta"), color="tab:orange", marker=".")
        offset.set_ylim(-0.02, 0.52)  # beta runs from 0.5 down to 0: a flat 0 should look like one
        offset.set_ylabel("offset beta", color="tab:orange")
        offset.grid(False)
    schedule.set_title("gate schedule: tau (blue, left), beta (orange, right)")
    if (soft := series("lm_loss_soft")) is not None:
        gap.plot(steps, soft, marker=".", label="soft mask (training)")
        gap.plot(steps, series("lm_loss_exact"), marker=".", label="exact 0/1 mask (evaluation)")
        gap.set_yscale("log")
        gap.legend(fontsize=8)
    gap.set_title("train/eval gap: LM loss of one batch, no dropout")
    for ax in (losses, channels, schedule, gap):
        ax.set_xlabel("step")
    fig.tight_layout()
    return fig


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
