"""The study's cut-quality table: for every pruned method, the untuned base with exactly that method's cut,
beside the reference cuts (`pat_lite.baselines.cut_quality`), then the tuned result in the same unit.

"How good was the choice" (the untuned column) and "how much did tuning recover" (tuned − untuned) become
separate columns. A method's cut:

- prune-ft-norm and the fixed-mask HSM baseline: the norm set; prune-ft-pca: the PCA slice;
- every PAT variant: the kept channels its run ended with (`merged/pat_kept.json`), in the PCA basis its
  run was rotated into where it has one (`rotation` in its PAT state);
- tune → prune methods are left out: their cut is chosen on the tuned model, not on the base.

Everything is cached in `<out>/<suite>-cut-quality.json` (reference cuts once per base and ratio, each
run by its folder name), so a growing grid only scores its new runs, and a checkout without the run
folders (they are not committed) still rebuilds the table from the cache and the committed rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from pat_lite.baselines.cut_quality import REFERENCE_KINDS, Cut, reference_cuts, score_cuts
from pat_lite.core.config import ENERGY_CRITERION, NORM_CRITERION
from pat_lite.core.residual import residual_second_moment
from pat_lite.reproduce.diagnostics import kept_at_milestone, logged_milestone
from pat_lite.reproduce.methods import get_method, method_label
from pat_lite.reproduce.rows import run_folder
from pat_lite.reproduce.suites import Suite
from pat_lite.training.trainer import MASK_HISTORY, PAT_STATE, load_mask_history
from pat_lite.utils.atomic import atomic_write_text
from pat_lite.utils.environment import environment

__all__ = ["cut_quality_table", "method_cut"]

RANDOM_DRAWS = 5


def method_cut(out: Path, row: dict[str, Any], references: dict[str, Cut]) -> Cut | None:
    """The cut a row's method made on the base (None for methods without one, or that cut after tuning)."""
    method = get_method(row["method"])
    if method.tuned_from or not method.pruned:
        return None
    if method.prune_before in ("norm", "pca"):
        return references[method.prune_before]
    settings = method.train or {}
    if settings.get("pat.fixed_channels") == NORM_CRITERION:
        return references["norm"]
    if settings.get("pat.fixed_channels") == ENERGY_CRITERION:  # in the PCA basis: the top directions
        return references["pca" if settings.get("pat.basis") == "pca" else "energy"]
    folder = run_folder(out, row)
    if (
        settings.get("method") != "pat"
        or folder is None
        or not (folder / "merged" / "pat_kept.json").is_file()
    ):
        return None
    kept = json.loads((folder / "merged" / "pat_kept.json").read_text())["kept_channels"]
    return Cut(folder.name, tuple(kept), _rotation(folder))


def _rotation(folder: Path):
    state = load_file(str(folder / "adapter" / PAT_STATE))
    return state["rotation"].float() if "rotation" in state else None


def cut_at_s0(folder: Path, final: Cut) -> tuple[Cut, dict[str, int]] | None:
    """A PAT run's kept set at the first logged step at or after s0 (the set the paper's Eq. 6 fixes from
    s0 on) as a cut of the base, with that step and how many keep/cut decisions changed between it and the
    end; None for a run without s0 or without a mask history."""
    history = folder / MASK_HISTORY
    if not history.is_file():
        return None
    steps, proxies = load_mask_history(history)
    found = kept_at_milestone(steps, proxies, len(final.kept), logged_milestone(folder))
    if found is None:
        return None
    step, kept = found
    changed = len(kept ^ set(final.kept)) // 2
    return Cut(f"{folder.name}@s0", tuple(sorted(kept)), final.rotation), {"step": step, "changed": changed}


def _rows_at_main_ratio(suite: Suite, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("selected") and r["ratio"] == suite.main_ratio]


def cut_quality_table(
    out: Path, suite: Suite, rows: list[dict[str, Any]], compute: bool = True
) -> dict[str, Any]:
    """The table (see the module docstring) as plain data for `report.cut_quality_lines`; computes what
    the cache lacks (loading the base only then), or with `compute=False` leaves such rows out and writes
    nothing."""
    path = out / f"{suite.name}-cut-quality.json"
    cache = json.loads(path.read_text()) if path.is_file() else {}
    key = f"ratio={suite.main_ratio:g}"
    candidates = [r for r in _rows_at_main_ratio(suite, rows) if get_method(r["method"]).pruned]
    state: dict[str, Any] = {}

    def loaded() -> dict[str, Any]:
        if not state:
            from pat_lite.core.arch import width_for_ratio
            from pat_lite.models.loading import load_model_and_tokenizer

            suite.set_threads()
            base, tokenizer = load_model_and_tokenizer(suite.base_model)
            calibration = suite.calibration(tokenizer)
            width = width_for_ratio(base.config, suite.main_ratio)
            state.update(
                base=base.eval(), tokenizer=tokenizer, calibration=calibration, width=width,
                moment=residual_second_moment(base, calibration),
                score=lambda model: suite.cut_score(model, tokenizer),
            )  # fmt: skip
        return state

    if not candidates:  # nothing was cut at this ratio: no table (and no base to load for one)
        return {}
    if key not in cache.get("references", {}):
        if not compute:
            return {}
        s = loaded()
        cuts = reference_cuts(s["base"], s["calibration"], s["width"], random_draws=RANDOM_DRAWS)
        scored = score_cuts(s["base"], cuts, s["score"], s["moment"])
        cache.setdefault("references", {})[key] = {
            "dense": s["score"](s["base"]),
            "cuts": {c.name: {**scored[c.name], "kept": list(c.kept)} for c in cuts},
            "environment": environment(),
        }
    references_data = cache["references"][key]
    # A method whose cut is a reference one is looked up by the reference's name (no rotation needed).
    references = {name: Cut(name, tuple(entry["kept"])) for name, entry in references_data["cuts"].items()}
    runs = cache.setdefault("runs", {})
    method_rows = []
    for row in candidates:
        run = Path(row["run_dir"]).name if row.get("run_dir") else None
        entry = runs.get(run)  # scored before: no need for its run folder (a fresh clone has none)
        folder = run_folder(out, row)
        if entry is None or (compute and "at_s0" not in entry and folder is not None and folder.is_dir()):
            cut = method_cut(out, row, references)  # reads a PAT run's folder only if it exists
            if cut is None or (not compute and cut.name not in references_data["cuts"]):
                continue
            if cut.name in references_data["cuts"]:
                entry = references_data["cuts"][cut.name]
            else:
                entry = runs[cut.name] = _scored_run(cut, folder, loaded, entry)
        method_rows.append((row, entry))
    if compute:
        atomic_write_text(path, json.dumps(cache, indent=1, sort_keys=True) + "\n")
    return _as_table(suite, references_data, method_rows)


def _scored_run(cut: Cut, folder: Path, loaded, cached: dict[str, Any] | None) -> dict[str, Any]:
    """A PAT run's cache entry: its final cut scored (kept from the cache when it is there) and, under
    `at_s0`, its kept set at s0 scored with the number of decisions changed after it (None: no s0)."""
    s = loaded()
    entry = dict(cached) if cached else {
        **score_cuts(s["base"], [cut], s["score"], s["moment"])[cut.name], "environment": environment(),
    }  # fmt: skip
    at_s0 = cut_at_s0(folder, cut)
    entry["at_s0"] = None
    if at_s0 is not None:
        s0_cut, record = at_s0
        same = s0_cut.kept == tuple(sorted(cut.kept))
        scored = {"score": entry["score"], "energy_kept": entry["energy_kept"]} if same else (
            score_cuts(s["base"], [s0_cut], s["score"], s["moment"])[s0_cut.name]
        )  # fmt: skip
        entry["at_s0"] = {**scored, **record}
    return entry


def _as_table(suite: Suite, references: dict[str, Any], method_rows: list) -> dict[str, Any]:
    cuts = references["cuts"]
    table_rows = []
    randoms = [cuts[name] for name in cuts if name.startswith("random-")]
    table_rows.append({
        "label": f"random ({len(randoms)} draws)", "chooser": "reference",
        "untuned": [c["score"] for c in randoms], "energy_kept": [c["energy_kept"] for c in randoms],
    })  # fmt: skip
    for name in REFERENCE_KINDS[1:]:
        table_rows.append({
            "label": f"`{name}`", "chooser": "reference",
            "untuned": [cuts[name]["score"]], "energy_kept": [cuts[name]["energy_kept"]],
        })  # fmt: skip
    grouped: dict[tuple[str, int], dict[str, list[float]]] = {}
    for row, entry in method_rows:
        group = grouped.setdefault(
            (row["method"], row["steps"]), {"untuned": [], "energy": [], "tuned": [], "s0": [], "changed": []}
        )
        group["untuned"].append(entry["score"])
        group["energy"].append(entry["energy_kept"])
        group["tuned"].append(row["metrics"][suite.cut_metric])
        if entry.get("at_s0"):
            group["s0"].append(entry["at_s0"]["score"])
            group["changed"].append(entry["at_s0"]["changed"])
    for (method, steps), group in sorted(grouped.items(), key=lambda item: (item[0][1], item[0][0])):
        chooser = _chooser(method)
        table_rows.append({
            "label": f"{method_label(method)}, {steps} steps", "chooser": chooser,
            "untuned": group["untuned"], "energy_kept": group["energy"], "tuned": group["tuned"],
            # only where every seed's run had its mask history when it was scored
            **({"untuned_at_s0": group["s0"], "changed_after_s0": group["changed"]}
               if group["s0"] and len(group["s0"]) == len(group["untuned"]) else {}),
        })  # fmt: skip
    return {
        "measure": suite.cut_measure,
        "unit": suite.metric_units.get(suite.cut_metric, ""),
        "lower_is_better": suite.cut_lower_is_better,
        "dense": references["dense"],
        "rows": table_rows,
    }


def _chooser(method_name: str) -> str:
    method = get_method(method_name)
    if method.prune_before:
        return f"{method.prune_before} (reference)"
    if (method.train or {}).get("pat.fixed_channels") == "norm":
        return "norm (reference)"
    return "its run's mask (per seed)"
