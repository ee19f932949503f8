"""Plots of a training run's log (what notebooks 02 and 03 show after `train`)."""

from __future__ import annotations

from typing import Any


def training_log_rows(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-logging-step entries of `TrainResult.log_history` (not the final summary line)."""
    return [entry for entry in log_history if "loss" in entry and "step" in entry]


def plot_training_log(log_history: list[dict[str, Any]], target_width: int | None = None):
    """Four panels: every loss term (log scale), active channels against the target, the gate schedule τ
    (log scale) with β, and the train/eval gap — the LM loss of one batch under the soft (training) mask
    and under the exact 0/1 mask evaluation uses. Returns the matplotlib Figure; a plain LoRA log fills the
    first panel only."""
    import matplotlib.pyplot as plt

    rows = training_log_rows(log_history)
    steps = [row["step"] for row in rows]

    def series(key: str) -> list[float] | None:
        return [row[key] for row in rows] if rows and all(key in row for row in rows) else None

    fig, (losses, channels, schedule, gap) = plt.subplots(1, 4, figsize=(20, 3.6))
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
        schedule.plot(steps, tau, label="tau")
        schedule.set_yscale("log")
        schedule.twinx().plot(steps, series("beta"), color="tab:orange", label="beta")
    schedule.set_title("gate schedule: tau (log, blue), beta (orange)")
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
