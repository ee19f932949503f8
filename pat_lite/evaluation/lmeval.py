"""Evaluate an in-memory model or a saved checkpoint with lm-evaluation-harness (docs/method.md §9).

Three task sets and two scorings, all run through lm-eval:

- ``tasks="toy"``: the embedded offline multiple-choice sets ``data/toy/eval_<family>.jsonl`` (families are
  discovered by glob); ``tasks="paper14"``: the paper's 14 tasks (see :data:`pat_lite.paper_tasks.PAPER14`
  for the lm-eval names); ``tasks="realtext"``: held-out real English, perplexity and cloze
  (:mod:`pat_lite.evaluation.realtext_tasks`, log-likelihood only); or an explicit list of lm-eval task
  names.
- ``scoring="loglik"``: lm-eval's standard log-likelihood multiple choice (stock lm-eval tasks for
  paper14); ``scoring="paper"``: the paper's protocol (§9) — the Alpaca-wrapped lettered question, a short
  greedy generation, the first capital letter that is a valid label — as ``generate_until`` tasks on the
  same datasets (``data/lm_eval_tasks/pat_*.yaml``, ``toy_*_paper.yaml``).

The same YAMLs serve the stock CLI::

    python -m lm_eval --model hf --model_args pretrained=DIR --tasks toy --include_path data/lm_eval_tasks

Hub datasets that are not available (offline and not cached) raise ONE :class:`EvaluationDataUnavailable`
listing all of them and how to fetch them, before any model work.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pat_lite.evaluation import paper_tasks
from pat_lite.evaluation.paper_results import lora_and_pat_averages
from pat_lite.evaluation.paper_tasks import PAPER14, TASKS_DIR
from pat_lite.evaluation.realtext_tasks import REALTEXT_TASKS
from pat_lite.utils.atomic import atomic_write_text
from pat_lite.utils.checkpoints import check_model_folder, loading_errors
from pat_lite.utils.device import check_device
from pat_lite.utils.errors import ConfigError, DataError, NumericalError, PatLiteError
from pat_lite.utils.output import writing_to

__all__ = [
    "EvaluationDataUnavailable",
    "check_datasets_available",
    "evaluate",
    "resolve_tasks",
    "to_markdown",
    "write_results",
]

log = logging.getLogger(__name__)

SCORINGS = ("loglik", "paper")
#: The task-set names `resolve_tasks` expands (each given alone, not inside a list of tasks).
TASK_SETS = ("toy", "paper14", "realtext")
#: Task-name prefixes of this project's YAMLs: these need no index of lm-eval's own tasks (~8 s to build).
PROJECT_TASK_PREFIXES = ("pat_", "toy_", "realtext_")
#: Perplexity metrics of rolling log-likelihood tasks, the headline first (lower is better).
PERPLEXITY_METRICS = ("word_perplexity", "byte_perplexity", "bits_per_byte")
#: dataset_path values that read local files (never checked against the hub).
_LOCAL_BUILDERS = {"json", "csv", "parquet", "text", "arrow", "pandas", "imagefolder", "audiofolder"}


class EvaluationDataUnavailable(PatLiteError, RuntimeError):
    """Some evaluation datasets cannot be loaded here (offline and not cached); the message lists all."""

    def __init__(self, missing: list[tuple[str, str, str | None]]) -> None:
        self.missing = missing  # (task, dataset_path, dataset_name)
        super().__init__(_missing_message(missing))

    @property
    def summary(self) -> str:
        """The message's first line without the list: what is missing, in one sentence."""
        datasets = len({path for _, path, _ in self.missing})
        return (
            f"{len(self.missing)} evaluation task(s) need {datasets} hub dataset(s) that cannot be loaded "
            "here; the full message (str(error), or `pat-lite eval --tasks ...`) says how to fetch them"
        )


@dataclass
class TaskRef:
    """One leaf of an evaluation: lm-eval task (or group) name, display label, spec handed to lm-eval."""

    name: str
    label: str
    spec: str | dict[str, Any]
    axis: str | None = None  # toy tasks: "retention" or "skill" (docs/method.md §10)


@contextmanager
def _quiet_git_hash() -> Iterator[None]:
    """lm-eval records the git commit of the working directory by running `git describe`, whose "fatal: not
    a git repository" goes straight to the terminal (or a notebook's page) outside a checkout, such as a zip
    download. Inside this block the same call runs with git's stderr discarded; the result is the same."""
    import lm_eval.evaluator

    original = getattr(lm_eval.evaluator, "get_git_commit_hash", None)
    if original is None:  # another lm-eval version: nothing to quiet
        yield
        return
    lm_eval.evaluator.get_git_commit_hash = git_commit_hash
    try:
        yield
    finally:
        lm_eval.evaluator.get_git_commit_hash = original


def git_commit_hash() -> str | None:
    """`git describe --always` of the working directory, or None outside a git checkout (silently)."""
    try:
        found = subprocess.run(["git", "describe", "--always"], capture_output=True, text=True, check=True)
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
    return found.stdout.strip() or None


# --------------------------------------------------------------------------------------- task resolution
@lru_cache(maxsize=2)
def _task_manager(include_defaults: bool):
    """A cached lm-eval TaskManager over this project's YAMLs (+ lm-eval's own tasks if asked; ~8 s)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR), include_defaults=include_defaults)


def _template(name: str) -> dict[str, Any]:
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(TASKS_DIR / name, resolve_func=True, recursive=True)


def _toy_refs(scoring: str, toy_dir: str | os.PathLike | None) -> list[TaskRef]:
    root = Path(toy_dir) if toy_dir else paper_tasks.default_toy_dir()
    families = paper_tasks.toy_axes(root)
    if not families:
        raise DataError(
            f"no toy eval sets (eval_<family>.jsonl) in {root}; "
            "generate them: python -m pat_lite.data.toyworld"
        )
    template = _template("_toy_loglik_template_yaml" if scoring == "loglik" else "_toy_paper_template_yaml")
    refs = []
    for fam, axis in families.items():
        name = f"toy_{fam}" if scoring == "loglik" else f"toy_{fam}_paper"
        spec = {**template, "task": name, "dataset_kwargs": {"family": fam, "toy_dir": str(root.resolve())}}
        refs.append(TaskRef(name, fam, spec, axis))
    return refs


def resolve_tasks(
    tasks: str | list[str],
    scoring: str,
    toy_dir: str | os.PathLike | None = None,
    task_overrides: dict[str, dict[str, Any]] | None = None,
) -> tuple[str, list[TaskRef]]:
    """Turn ``tasks`` into (task-set name, leaf :class:`TaskRef` list) for ``scoring``.

    ``"toy"`` → one task per family found in ``toy_dir``; ``"paper14"`` → the 14 tasks of §9 (stock lm-eval
    tasks for "loglik", ``pat_*`` for "paper"); ``"realtext"`` → held-out perplexity and cloze ("loglik"
    only: neither is a lettered question); a list (or comma-separated string) → those lm-eval names,
    where a §9 label such as "ARC-C" maps to the scoring's task. ``task_overrides[name]`` replaces keys of
    that task's YAML (e.g. ``dataset_path: json`` + ``dataset_kwargs.data_files`` to point it at local files).
    """
    if scoring not in SCORINGS:
        raise ConfigError(f"scoring must be one of {SCORINGS}, not {scoring!r}")
    if isinstance(tasks, str) and tasks == "toy":
        return "toy", _toy_refs(scoring, toy_dir)
    if isinstance(tasks, str) and tasks == "realtext":
        if scoring != "loglik":
            raise ValueError(
                "the realtext task set is scored by log-likelihood only (rolling perplexity and cloze): "
                "use scoring='loglik'"
            )
        labels = {"realtext_perplexity": "held-out perplexity", "realtext_cloze": "held-out cloze"}
        return "realtext", [TaskRef(name, labels[name], name) for name in REALTEXT_TASKS]
    if isinstance(tasks, str) and tasks == "paper14":
        names, set_name = [t.loglik if scoring == "loglik" else t.paper for t in PAPER14], "paper14"
    else:
        names = [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t.strip()]
        set_name = "custom"
        if not names:
            raise ConfigError(f"no evaluation tasks given; {_valid_task_names()}")
        sets = [n for n in names if n in TASK_SETS]
        if sets:
            raise ConfigError(
                f"{sets[0]} is a task set: give it alone (--tasks {sets[0]}), not in a list of tasks"
            )
        repeated = sorted({n for n in names if [m.lower() for m in names].count(n.lower()) > 1})
        if repeated:
            raise ConfigError(f"the tasks list {', '.join(repeated)} more than once: give each task once")
    by_label = {t.label.lower(): t for t in PAPER14}
    labels = {t.loglik: t.label for t in PAPER14} | {t.paper: t.label for t in PAPER14}
    refs = []
    for name in names:
        if name.lower() in by_label:
            task = by_label[name.lower()]
            name = task.loglik if scoring == "loglik" else task.paper
        spec: str | dict[str, Any] = name
        if task_overrides and name in task_overrides:
            entry = _task_manager(not name.startswith(PROJECT_TASK_PREFIXES)).task_index.get(name)
            if entry is None or entry.yaml_path is None:
                raise KeyError(f"cannot override {name!r}: not a YAML task")
            from lm_eval.tasks._yaml_loader import load_yaml

            spec = {**load_yaml(entry.yaml_path, resolve_func=True, recursive=True), **task_overrides[name]}
        refs.append(TaskRef(name, labels.get(name, name), spec))
    return set_name, refs


# -------------------------------------------------------------------------------- dataset availability
def _leaf_configs(tm: Any, spec: str | dict[str, Any], seen: set[str] | None = None) -> list[dict[str, Any]]:
    """Raw configs of every leaf task behind ``spec`` (groups and tags expanded), without building tasks."""
    from lm_eval.tasks._index import Kind
    from lm_eval.tasks._yaml_loader import load_yaml

    if isinstance(spec, dict):
        if "task" in spec and not isinstance(spec["task"], list):
            return [spec]
        members = spec.get("task", [])
        return [c for m in members for c in _leaf_configs(tm, m, seen)]
    seen = set() if seen is None else seen
    if spec in seen:
        return []
    seen.add(spec)
    entry = tm.task_index.get(spec)
    if entry is None:
        import difflib

        close = difflib.get_close_matches(spec, list(tm.task_index), n=3)
        maybe = f"did you mean {', '.join(close)}? " if close else ""
        raise ConfigError(f"unknown evaluation task {spec!r}: {maybe}{_valid_task_names()}")
    if entry.kind == Kind.TAG:
        return [c for t in sorted(entry.tags) for c in _leaf_configs(tm, t, seen)]
    cfg = load_yaml(entry.yaml_path, resolve_func=False, recursive=True) if entry.yaml_path else {}
    if entry.kind == Kind.GROUP:
        return [c for m in cfg.get("task", []) for c in _leaf_configs(tm, m, seen)]
    return [cfg]


def _valid_task_names() -> str:
    labels = ", ".join(t.label for t in PAPER14)
    return (
        f"give toy, paper14, one of the paper's tasks ({labels}) or lm-eval task names "
        "(`python -m lm_eval ls tasks` lists them), comma-separated"
    )


def check_datasets_available(refs: list[TaskRef], tm: Any = None) -> None:
    """Raise :class:`EvaluationDataUnavailable` listing every hub dataset behind ``refs`` that cannot be
    loaded here (checked with ``datasets.load_dataset_builder``: instant offline, a metadata call online)."""
    import datasets

    tm = tm or _task_manager(True)
    missing: list[tuple[str, str, str | None]] = []
    checked: dict[tuple[str, str | None], bool] = {}
    for ref in refs:
        for cfg in _leaf_configs(tm, ref.spec):
            path, name = cfg.get("dataset_path"), cfg.get("dataset_name")
            if cfg.get("custom_dataset") or not path or path in _LOCAL_BUILDERS or Path(path).exists():
                continue
            if (path, name) not in checked:
                kwargs = {
                    k: v for k, v in (cfg.get("dataset_kwargs") or {}).items() if k != "trust_remote_code"
                }
                try:
                    datasets.load_dataset_builder(path, name, **kwargs)
                    checked[path, name] = True
                except Exception as err:  # any failure means "not loadable here"
                    log.debug("dataset %s/%s unavailable: %s", path, name, err)
                    checked[path, name] = False
            if not checked[path, name]:
                missing.append((cfg.get("task", ref.name), path, name))
    if missing:
        raise EvaluationDataUnavailable(missing)


def _missing_message(missing: list[tuple[str, str, str | None]]) -> str:
    by_path: dict[str, list[str | None]] = {}
    for _, path, name in missing:
        if name not in by_path.setdefault(path, []):
            by_path[path].append(name)
    offline = [
        v for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if os.environ.get(v, "0") not in ("", "0")
    ]
    lines = [
        f"{len(missing)} evaluation task(s) need hub datasets that cannot be loaded here"
        + (f" ({'/'.join(offline)} set and not in the datasets cache)" if offline else "")
        + ":"
    ]
    for path, names in by_path.items():
        tasks = sorted({t for t, p, _ in missing if p == path})
        shown = ", ".join(n or "default config" for n in names[:6]) + (
            f", ... ({len(names)} configs)" if len(names) > 6 else ""
        )
        lines.append(
            f"  - {path} [{shown}] (tasks: {', '.join(tasks[:6])}{', ...' if len(tasks) > 6 else ''})"
        )
    lines.append("Fetch them once on a machine with internet access, into the same HF_HOME, e.g.:")
    for path, names in by_path.items():
        if len(names) == 1:
            arg = f"'{path}'" + (f", '{names[0]}'" if names[0] else "")
            call = f"datasets.load_dataset({arg})"
        else:
            call = f"[datasets.load_dataset('{path}', n) for n in {names!r}]"
        lines.append(f'  HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 python -c "import datasets; {call}"')
    lines.append(
        "or run this evaluation once with HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 (lm-eval caches them)."
    )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- evaluation
def _metric_key(task_result: dict[str, Any]) -> str | None:
    for key in ("acc,none", "acc,first_letter"):
        if key in task_result:
            return key
    return next((k for k in task_result if k.startswith("acc,")), None)


def _metrics(task_result: dict[str, Any]) -> dict[str, float]:
    """Every numeric metric of one lm-eval task result, by name (``"word_perplexity,none"`` →
    ``"word_perplexity"``), stderrs included as ``<name>_stderr``."""
    out = {}
    for key, value in task_result.items():
        name = key.split(",", 1)[0]
        if "," in key and (number := _float(value)) is not None:
            out.setdefault(name, number)
    return out


def _n_samples(out: dict[str, Any], name: str) -> int:
    if name in out.get("n-samples", {}):
        return int(out["n-samples"][name]["effective"])
    return sum(_n_samples(out, sub) for sub in out.get("group_subtasks", {}).get(name, []))


def _float(x: Any) -> float | None:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def evaluate(
    model_or_path: Any,
    tokenizer: Any = None,
    tasks: str | list[str] = "toy",
    scoring: str = "loglik",
    limit: int | float | None = None,
    batch_size: int = 8,
    out_dir: str | os.PathLike | None = None,
    device: str | None = None,
    toy_dir: str | os.PathLike | None = None,
    max_gen_toks: int | None = None,
    task_overrides: dict[str, dict[str, Any]] | None = None,
    log_samples: bool = False,
) -> dict[str, Any]:
    """Evaluate with lm-eval; return per-task metrics and the average accuracy (fractions, §9 averages
    tasks unweighted; tasks without accuracy, such as perplexity, are left out of the average).

    ``model_or_path``: a ``PreTrainedModel`` (then ``tokenizer`` is required) or a checkpoint directory
    (loaded by lm-eval's ``hf`` model exactly as the stock CLI does). ``limit`` caps documents per task
    (lm-eval semantics). ``max_gen_toks`` overrides the paper protocol's generation length (YAML: 16).
    ``out_dir``: also write ``eval_<set>_<scoring>.json`` and ``.md``. ``log_samples``: keep per-document
    records under ``"samples"``. Raises :class:`EvaluationDataUnavailable` before loading any model.

    Inputs are checked first (ConfigError / CheckpointError, one line each): ``limit`` > 0, the device,
    ``out_dir`` (a writable folder, not in use by another command: held until the results are written),
    known tasks, available datasets, then a model folder that exists and loads (a pat_lite run folder
    stands for its ``merged/`` model). Logits that are not finite (NaN, inf) stop the evaluation with a
    NumericalError naming the model: a broken model would otherwise score at chance without a word.
    """
    if limit is not None and not limit > 0:
        raise ConfigError(f"limit={limit}: give a number of documents per task (≥ 1) or a fraction in (0, 1)")
    check_device(device)
    settings = dict(
        tasks=tasks, scoring=scoring, limit=limit, batch_size=batch_size, device=device, toy_dir=toy_dir,
        max_gen_toks=max_gen_toks, task_overrides=task_overrides, log_samples=log_samples,
    )  # fmt: skip
    if out_dir is None:
        return _evaluate(model_or_path, tokenizer, **settings)
    with writing_to(out_dir, "--out-dir") as folder:
        results = _evaluate(model_or_path, tokenizer, **settings)
        write_results(results, folder)
    return results


def _evaluate(
    model_or_path: Any,
    tokenizer: Any,
    tasks: str | list[str],
    scoring: str,
    limit: int | float | None,
    batch_size: int,
    device: str | None,
    toy_dir: str | os.PathLike | None,
    max_gen_toks: int | None,
    task_overrides: dict[str, dict[str, Any]] | None,
    log_samples: bool,
) -> dict[str, Any]:
    """`evaluate` once its arguments are checked (and its output folder held)."""
    import lm_eval
    from lm_eval.evaluator import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    set_name, refs = resolve_tasks(tasks, scoring, toy_dir=toy_dir, task_overrides=task_overrides)
    needs_builtin = any(
        isinstance(r.spec, str) and not r.name.startswith(PROJECT_TASK_PREFIXES) for r in refs
    )
    tm = _task_manager(needs_builtin)
    check_datasets_available(refs, tm)
    if isinstance(model_or_path, (str, os.PathLike)):
        folder = check_model_folder(model_or_path, accept_run_folder=True)
        if folder is not None and folder != Path(model_or_path).expanduser():
            print(f"[pat_lite] evaluating {folder}, the merged model of the run folder {model_or_path}")
        model_or_path = folder if folder is not None else str(model_or_path)

    was_training = None
    if isinstance(model_or_path, (str, os.PathLike)):
        import torch

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        local = model_or_path if Path(model_or_path).is_dir() else None
        with loading_errors(local):
            lm = HFLM(
                pretrained=str(model_or_path), tokenizer=tokenizer, batch_size=batch_size, device=device
            )
        model_name = str(model_or_path)
    else:
        if tokenizer is None:
            raise ValueError("evaluating an in-memory model needs its tokenizer")
        was_training = model_or_path.training
        lm = HFLM(pretrained=model_or_path, tokenizer=tokenizer, batch_size=batch_size)
        model_name = type(model_or_path).__name__
    check = lm.model.register_forward_hook(_finite_logits_check(model_name))
    try:
        with _quiet_git_hash():
            out = simple_evaluate(
                model=lm,
                tasks=[r.spec for r in refs],
                task_manager=tm,
                limit=limit,
                log_samples=log_samples,
                bootstrap_iters=1000,
                gen_kwargs={"max_gen_toks": max_gen_toks} if max_gen_toks else None,
            )
    finally:
        check.remove()
        if was_training:
            model_or_path.train()
    per_task: dict[str, dict[str, Any]] = {}
    for ref in refs:
        res = out["results"][ref.name]
        metrics = _metrics(res)
        key = _metric_key(res) or next((f"{m},none" for m in PERPLEXITY_METRICS if m in metrics), None)
        if key is None:
            raise KeyError(f"lm-eval returned neither accuracy nor perplexity for {ref.name}: {sorted(res)}")
        metric, filt = key.split(",", 1)
        is_acc = metric == "acc"
        per_task[ref.name] = {
            "label": ref.label,
            "acc": _float(res[key]) if is_acc else None,
            "acc_stderr": _float(res.get(f"{metric}_stderr,{filt}")) if is_acc else None,
            "acc_norm": _float(res.get("acc_norm,none")),
            "n": _n_samples(out, ref.name),
            "metric": key,
            "metrics": metrics,
        }
    accs = [t["acc"] for t in per_task.values() if t["acc"] is not None]
    results: dict[str, Any] = {
        "task_set": set_name,
        "scoring": scoring,
        "model": model_name,
        "limit": limit,
        "lm_eval_version": lm_eval.__version__,
        "tasks": per_task,
        "average": sum(accs) / len(accs) if accs else None,
        "n_tasks": len(per_task),
    }
    if set_name == "toy":
        results["axes"] = paper_tasks.toy_axis_accuracies(per_task, {r.name: r.axis for r in refs})
    if log_samples:
        results["samples"] = {
            name: [
                {k: s.get(k) for k in ("doc_id", "target", "resps", "filtered_resps", "acc")}
                for s in out.get("samples", {}).get(name, [])
            ]
            for name in out.get("samples", {})
        }
    return results


def _finite_logits_check(model_name: str):
    """A forward hook that raises NumericalError when the model's logits hold NaN or infinity."""
    import torch

    def hook(module: Any, args: Any, output: Any) -> None:
        logits = getattr(output, "logits", None)
        if logits is None and isinstance(output, (tuple, list)) and output:
            logits = output[0]
        if isinstance(logits, torch.Tensor) and not torch.isfinite(logits).all():
            bad = int((~torch.isfinite(logits)).sum())
            raise NumericalError(
                f"{model_name} returns logits that are not finite ({bad} of {logits.numel()} NaN or inf): "
                "its weights are broken (a diverged training run?); its scores would mean nothing"
            )

    return hook


# ---------------------------------------------------------------------------------------------- output
def to_markdown(results: dict[str, Any]) -> str:
    """A markdown table of per-task accuracy (%) ± stderr, n and the unweighted average; for paper14 the
    paper's reported 14-task averages (§9) follow, marked as not comparable under log-likelihood scoring."""
    scoring = results["scoring"]
    desc = {
        "loglik": "lm-eval log-likelihood (multiple choice; rolling for perplexity)",
        "paper": "paper protocol (§9): Alpaca prompt, greedy generation, first valid capital letter",
    }[scoring]
    lines = [
        f"**{results['task_set']}** — scoring: {desc} — model: `{results['model']}`"
        + (f" — limit {results['limit']}" if results.get("limit") else ""),
        "",
        "| task | lm-eval task | n | acc (%) | ± stderr |",
        "|---|---|---:|---:|---:|",
    ]
    perplexity_tasks = {
        name: t for name, t in results["tasks"].items() if PERPLEXITY_METRICS[0] in t.get("metrics", {})
    }
    accuracy_tasks = {name: t for name, t in results["tasks"].items() if name not in perplexity_tasks}
    for name, t in accuracy_tasks.items():
        acc = "n/a" if t["acc"] is None else f"{100 * t['acc']:.2f}"
        err = "" if t.get("acc_stderr") is None else f"{100 * t['acc_stderr']:.2f}"
        lines.append(f"| {t['label']} | `{name}` | {t['n']} | {acc} | {err} |")
    avg = results.get("average")
    avg_text = "n/a" if avg is None else f"{100 * avg:.2f}"
    lines.append(f"| **average** ({len(accuracy_tasks)} tasks) | | | **{avg_text}** | |")
    for axis, acc in results.get("axes", {}).items():
        lines.append(f"| **{axis}** (axis, item-weighted) | | | **{100 * acc:.2f}** | |")
    if perplexity_tasks:
        lines += [
            "",
            "| task | lm-eval task | documents | word perplexity | byte perplexity | bits per byte |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for name, t in perplexity_tasks.items():
            values = " | ".join(f"{t['metrics'][m]:.4g}" for m in PERPLEXITY_METRICS)
            lines.append(f"| {t['label']} | `{name}` | {t['n']} | {values} |")
    if results["task_set"] == "paper14":
        note = "" if scoring == "paper" else " — not comparable: the paper scores by generated letter"
        lines += ["", f"Paper's reported 14-task averages (%, docs/method.md §9){note}:", ""]
        reported = lora_and_pat_averages()
        methods = list(next(iter(reported.values())))
        lines.append("| model | " + " | ".join(methods) + " |")
        lines.append("|---|" + "---:|" * len(methods))
        for model, row in reported.items():
            lines.append(f"| {model} | " + " | ".join(f"{row[m]:.2f}" for m in methods) + " |")
        lines.append(
            f"| **ours** (`{results['model']}`) | {avg_text} (this run) |" + " |" * (len(methods) - 1)
        )
    return "\n".join(lines) + "\n"


def write_results(results: dict[str, Any], out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``eval_<set>_<scoring>.json`` and ``.md`` into ``out_dir``; return both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"eval_{results['task_set']}_{results['scoring']}"
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    atomic_write_text(json_path, json.dumps(results, indent=2, sort_keys=True, default=str) + "\n")
    atomic_write_text(md_path, to_markdown(results))
    return json_path, md_path
