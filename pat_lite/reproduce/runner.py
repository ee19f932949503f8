"""`pat-lite reproduce`: every method on the same data, steps and LoRA, several seeds, one command.

    pat-lite reproduce --suite toy|smollm2 [--methods a,b] [--seeds 0,1,2] [--ratios 0.25]
                       [--steps N[,M]] [--learning-rates x,y] [--workers K] --out DIR

writes `DIR/<suite>.json` (`{"suite", "git_commit", "created", "commands", "rows": [{"method", "ratio",
"seed", "steps", "learning_rate", "selected", "metrics", "validation", "seconds"}]}`), `DIR/<suite>.md`
(mean ± std over seeds) and `DIR/<suite>.png`. Without --methods/--seeds/--ratios/--steps it runs the
suite's whole committed grid. Rows already in DIR (same settings) are kept, so re-running the same command
after a crash resumes where it stopped, and several commands can add to one table.

The protocol (fixed before any result was looked at, the same for every method):
- each method that tunes gets the same learning-rate sweep, on the first seed, at the suite's main ratio
  and step count; the learning rate with the best *validation* headline metric is then used for the other
  seeds, ratios and run lengths; the table reports *test* metrics, and every swept row is kept;
- tune → prune methods reuse the LoRA run of the same seed and learning rate;
- every row seeds itself and runs with a fixed number of CPU threads in a worker process (deterministic:
  the same row gives the same numbers whichever worker runs it, alone or beside others).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pat_lite.reproduce.cut_table import cut_quality_table
from pat_lite.reproduce.diagnostics import diagnose, diagnostics_markdown
from pat_lite.reproduce.methods import Method, get_method
from pat_lite.reproduce.rows import RowSpec, load_row, normalised, row_path, rows_dir, run_folder
from pat_lite.reproduce.suites import Suite, get_suite
from pat_lite.utils.atomic import atomic_write_text
from pat_lite.utils.environment import environment
from pat_lite.utils.errors import ConfigError
from pat_lite.utils.locks import hold_folder
from pat_lite.utils.output import output_location
from pat_lite.utils.processes import die_with_parent


# -------------------------------------------------------------------------------------------- planning
def sweep_rows(suite: Suite, method: Method, seed: int, learning_rates: Sequence[float]) -> list[RowSpec]:
    """The learning-rate sweep of one method: first seed, the suite's main ratio and run length."""
    rates: Sequence[float | None] = learning_rates if method.uses_learning_rate else [None]
    return [
        normalised(RowSpec(suite.name, method.name, suite.main_ratio, seed, suite.default_steps, lr))
        for lr in rates
    ]


def _sweep_point(suite: Suite, grid: Sequence[tuple[str, float, int, int]]) -> Suite:
    """The suite with its main ratio / run length moved to the requested ones when a command asks for
    neither (e.g. a quick `--steps 20` run sweeps at 20 steps)."""
    # Full-width rows (dense, LoRA) are normalised to ratio 0 and dense to 0 steps: they name no point.
    ratios, steps = {r for _, r, _, _ in grid if r > 0}, {n for *_, n in grid if n > 0}
    return replace(
        suite,
        main_ratio=suite.main_ratio if not ratios or suite.main_ratio in ratios else min(ratios),
        default_steps=suite.default_steps if not steps or suite.default_steps in steps else min(steps),
    )


def _grid(suite: Suite, methods, seeds, ratios, steps) -> list[tuple[str, float, int, int]]:
    """(method, ratio, seed, steps) of the requested rows; with no choice given, the committed grid."""
    if all(choice is None for choice in (methods, seeds, ratios, steps)):
        return [tuple(row) for row in suite.full_grid()]
    methods = methods or list(suite.default_methods)
    seeds = seeds if seeds is not None else list(suite.default_seeds)
    ratios = ratios or [suite.main_ratio]
    steps = steps or [suite.default_steps]
    return [(m, r, s, n) for m in methods for r in ratios for s in seeds for n in steps]


# ------------------------------------------------------------------------------------------- execution
def run_rows(
    out: Path, specs: Iterable[RowSpec], workers: int, progress: bool = True, validate: bool = False
) -> None:
    """Run every spec that has no row yet in `workers` worker processes (spawned, each runs many rows);
    `validate`: also score them on the validation split (the rows of a learning-rate sweep).

    Cut bases are built first (here, once each); rows that share a training run (e.g. `pat` and the
    explicitly named variant equal to the defaults) run one after the other in one worker, so a run is
    trained once; tune → prune rows run after every tuning row."""
    todo = list(dict.fromkeys(s for s in specs if load_row(out, s) is None))
    if not todo:
        return
    suite = get_suite(todo[0].suite)
    cuts = {(get_method(s.method).prune_before, s.ratio) for s in todo if get_method(s.method).prune_before}
    for kind, ratio in sorted(cuts):
        suite.pruned_base(out, kind, ratio)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc=f"reproduce {suite.name}", disable=not progress, unit="row")
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        max_workers=max(1, workers), mp_context=context,
        initializer=die_with_parent, initargs=(os.getpid(),),  # no orphans if this process is killed
    )  # fmt: skip
    with pool:
        for derived in (False, True):
            groups: dict[str, list[RowSpec]] = {}
            for spec in todo:
                if bool(get_method(spec.method).tuned_from) == derived:
                    groups.setdefault(suite.train_key(out, spec) or spec.label(), []).append(spec)
            futures = [pool.submit(_run_group, out, group, validate) for group in longest_first(groups)]
            for future in as_completed(futures):
                for label in future.result():
                    bar.update(1)
                    bar.set_postfix_str(label[:50])
    bar.close()


def longest_first(groups: dict[str, list[RowSpec]]) -> list[list[RowSpec]]:
    """The groups in the order the workers take them: most training steps first (ties keep the grid's
    order). A pool takes work in submission order, so a 1,000-step row submitted last would leave one
    core idle for hours at the end of a grid; started first, the short rows fill the other core."""
    ordered = sorted(enumerate(groups.values()), key=lambda item: (-max(s.steps for s in item[1]), item[0]))
    return [group for _, group in ordered]


def _run_group(out: Path, group: list[RowSpec], validate: bool) -> list[str]:
    """Worker side: run the rows of one group in order, each logging to its own file next to its row."""
    done = []
    for spec in group:
        log = row_path(out, spec).with_suffix(".log")
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as handle, redirect_stdout(handle), redirect_stderr(handle):
            try:
                execute_row(out, spec, validate)
            except Exception as error:
                raise RuntimeError(f"row {spec.label()} failed: {error!r}; its log: {log}") from error
        done.append(spec.label())
    return done


def execute_row(out: Path, spec: RowSpec, validate: bool = False) -> dict[str, Any]:
    """Produce, evaluate and record one row (in this process). Used by the worker.

    The row records where its time went: `build_cpu_seconds` (tuning, or cutting) and `eval_cpu_seconds`
    (validation, if asked, and test), CPU time of this process, besides the wall-clock `seconds`."""
    suite = get_suite(spec.suite)
    suite.set_threads()
    start, cpu_start = time.time(), time.process_time()
    model, tokenizer, details = suite.build(spec, out)
    cpu_built = time.process_time()
    validation = suite.evaluate(model, tokenizer, "validation") if validate else None
    metrics = suite.evaluate(model, tokenizer, "test")
    row = {
        **{k: v for k, v in asdict(spec).items() if k != "suite"},
        "hidden_size": int(model.config.hidden_size),
        "parameters": sum(p.numel() for p in model.parameters()),
        "metrics": metrics,
        "validation": validation,
        "seconds": round(time.time() - start, 1),
        "build_cpu_seconds": round(cpu_built - cpu_start, 1),
        "eval_cpu_seconds": round(time.process_time() - cpu_built, 1),
        "environment": environment(),
        **details,
    }
    atomic_write_text(row_path(out, spec), json.dumps(row, indent=1, sort_keys=True) + "\n")
    return row


# ------------------------------------------------------------------------------------------- the suite
def select_learning_rate(out: Path, suite: Suite, method: Method, seed: int) -> float | None:
    """The swept learning rate with the best validation headline (ties: the smaller rate)."""
    if not method.uses_learning_rate:
        return None
    rows = [load_row(out, s) for s in sweep_rows(suite, method, seed, suite.learning_rates)]
    if len(rows) == 1:
        return rows[0]["learning_rate"]
    sign = 1.0 if suite.higher_is_better else -1.0
    best = max(rows, key=lambda r: (sign * r["validation"][suite.headline], -r["learning_rate"]))
    return best["learning_rate"]


def sweep_validation(out: Path, suite: Suite, methods: Sequence[str], seed: int) -> dict[str, float | None]:
    """Each method's validation headline at the sweep point, at its chosen learning rate (None where the
    sweep row is missing or was not validated)."""
    values: dict[str, float | None] = {}
    for name in methods:
        method = get_method(name)
        rate = (
            select_learning_rate(out, suite, method, seed) if _sweep_done(out, suite, method, seed) else None
        )
        row = load_row(
            out, normalised(RowSpec(suite.name, name, suite.main_ratio, seed, suite.default_steps, rate))
        )
        values[name] = (row.get("validation") or {}).get(suite.headline) if row else None
    return values


def _sweep_done(out: Path, suite: Suite, method: Method, seed: int) -> bool:
    return all(load_row(out, s) is not None for s in sweep_rows(suite, method, seed, suite.learning_rates))


def run_suite(
    suite_name: str,
    out: str | os.PathLike = "results",
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    ratios: Sequence[float] | None = None,
    steps: Sequence[int] | None = None,
    learning_rates: Sequence[float] | None = None,
    workers: int | None = None,
    command: str | None = None,
    progress: bool = True,
    cut_quality: bool | None = None,
) -> dict[str, Any]:
    """Run (or resume) a suite's rows and write `<out>/<suite>.json`, `.md` and `.png`; return the JSON.

    `cut_quality`: score the cuts the report's cut-quality table lacks (a few CPU-minutes for SmolLM2's
    reference cuts); by default only for the suite's whole committed grid — a quick partial run (chosen
    methods, seeds, ratios or steps) reports the table from what `<out>` already holds.

    `out` is checked before any work, and the suite's rows are held (`holding_rows`) until the report is
    written: a second command on them is refused in one line."""
    suite = get_suite(suite_name)
    if learning_rates:
        suite = replace(suite, learning_rates=tuple(learning_rates))
    for name in methods or ():
        if not suite.is_placeholder(name):
            get_method(name)  # unknown names fail before anything runs
    if cut_quality is None:
        cut_quality = all(choice is None for choice in (methods, seeds, ratios, steps))
    with holding_rows(out, suite.name) as out:
        return _run_suite(suite, out, methods, seeds, ratios, steps, workers, command, progress, cut_quality)


@contextmanager
def holding_rows(out: str | os.PathLike, suite: str) -> Iterator[Path]:
    """Check `out` (`output_location`) and hold the suite's rows in it (`<out>/rows/<suite>`): one
    command at a time runs a suite into a folder. Yields the folder to write."""
    folder = output_location(out, "--out")
    with hold_folder(rows_dir(folder, suite), "--out"):
        yield folder


def _run_suite(
    suite: Suite,
    out: Path,
    methods,
    seeds,
    ratios,
    steps,
    workers,
    command: str | None,
    progress: bool,
    cut_quality: bool,
) -> dict[str, Any]:
    """`run_suite` once its names are checked and its rows held."""
    grid = _grid(suite, methods, seeds, ratios, steps)
    suite = _sweep_point(suite, grid)
    workers = workers or suite.workers
    first_seed = min(seed for _, _, seed, _ in grid)
    placeholders = {m for m, *_ in grid if suite.is_placeholder(m)}
    names = {m for m, *_ in grid if m not in placeholders}
    names |= {m for p in placeholders for m in suite.placeholder_pool(p)}
    needed = [get_method(n) for n in sorted(names | {get_method(n).tuned_from for n in names} - {None})]
    sweeps = [spec for m in needed for spec in sweep_rows(suite, m, first_seed, suite.learning_rates)]
    run_rows(out, sweeps, workers, progress, validate=len(suite.learning_rates) > 1 or bool(placeholders))
    chosen = {m.name: select_learning_rate(out, suite, m, first_seed) for m in needed}
    validation = sweep_validation(out, suite, [m.name for m in needed], first_seed)
    grid = [(name, r, s, n) for m, r, s, n in grid for name in suite.expand(m, validation)]
    specs = [normalised(RowSpec(suite.name, m, r, s, n, chosen[m])) for m, r, s, n in dict.fromkeys(grid)]
    derived_sources = [
        normalised(replace(spec, method=get_method(spec.method).tuned_from))
        for spec in specs
        if get_method(spec.method).tuned_from
    ]
    run_rows(out, derived_sources + specs, workers, progress)
    # A partial command (its own steps or learning rates) adding rows to a folder that holds the suite's
    # own sweep reports under the suite's protocol, not its own overrides.
    committed = get_suite(suite.name)
    report_suite = committed if _sweep_complete(out, committed) else suite
    return write_suite(out, report_suite, command, cut_quality=cut_quality)


def _sweep_complete(out: Path, suite: Suite) -> bool:
    """Whether `out` holds the suite's whole learning-rate sweep (every default method, first seed)."""
    seed = min(suite.default_seeds)
    return all(_sweep_done(out, suite, get_method(m), seed) for m in suite.default_methods)


def write_suite(out: Path, suite: Suite, command: str | None, cut_quality: bool = True) -> dict[str, Any]:
    """Collect every finished row of the suite under `out` into `<suite>.json/.md/.png`. The report is
    held while it is written (`<out>/<suite>.report`'s lock): two writers of one report refuse each
    other, while a report of the rows so far can be written beside a running grid (`--report-only`)."""
    out = output_location(out, "--out")
    with hold_folder(out / f"{suite.name}.report", "--out"):
        return _write_suite(out, suite, command, cut_quality)


def _write_suite(out: Path, suite: Suite, command: str | None, cut_quality: bool) -> dict[str, Any]:
    from pat_lite.reproduce.report import plot_suite, suite_markdown

    rows = [json.loads(p.read_text()) for p in sorted(rows_dir(out, suite.name).glob("*.json"))]
    if rows:  # a partial study (e.g. a quick --steps 20 run) reports at its own sweep point
        suite = _sweep_point(suite, [(r["method"], r["ratio"], r["seed"], r["steps"]) for r in rows])
    chosen: dict[str, float | None] = {}
    for row in rows:
        method = get_method(row["method"])
        if method.uses_learning_rate and row["method"] not in chosen:
            try:
                chosen[row["method"]] = select_learning_rate(out, suite, method, 0)
            except (TypeError, KeyError, AttributeError):
                chosen[row["method"]] = None  # the sweep of seed 0 is not complete
        row["selected"] = not method.uses_learning_rate or row["learning_rate"] == chosen.get(row["method"])
    json_path = out / f"{suite.name}.json"
    previous = json.loads(json_path.read_text()) if json_path.is_file() else {}
    placeholders = sorted({m for m, *_ in suite.full_grid() if suite.is_placeholder(m)})
    pools = sorted({m for p in placeholders for m in suite.placeholder_pool(p)})
    validation = sweep_validation(out, suite, pools, min(suite.default_seeds))
    choices = {}
    for name in placeholders:
        try:
            choices[name] = suite.expand(name, validation)
        except ConfigError:
            choices[name] = None  # the sweep of its pool is not complete yet
    commands = list(previous.get("commands", []))
    if command and command not in commands:
        commands.append(command)
    result = {
        "suite": suite.name,
        "git_commit": _git_commit(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "commands": commands,
        "protocol": suite.protocol(),
        # What each placeholder of the grid chose (by validation at the sweep point), and from what.
        "choices": choices,
        "choice_validation": {m: validation[m] for m in pools},
        # The committed grid's rows this folder still lacks (a grid run across sessions reports as it goes).
        "unfinished": unfinished_rows(suite, rows, choices) if suite == get_suite(suite.name) else [],
        # Every distinct environment the rows were made in (each row records its own).
        "environments": _distinct([row.get("environment") for row in rows]),
        "rows": sorted(
            rows, key=lambda r: (r["method"], r["ratio"], r["steps"], r["seed"], r["learning_rate"] or 0)
        ),
    }
    atomic_write_text(json_path, json.dumps(result, indent=1) + "\n")
    diagnostics = diagnose_suite(out, suite, rows)
    markdown = suite_markdown(result, suite, cut_quality_table(out, suite, rows, compute=cut_quality))
    if diagnostics:
        markdown += "\n" + "\n".join(
            [
                "## Diagnostics: what PAT's mask chose, first seed, main ratio and run length",
                "",
                f"Per run in `{suite.name}-diagnostics.json` (lock-in per channel, the soft/exact loss per "
                "logged step, update sizes); notebook 05 plots them. Overlaps are shares of the kept "
                "channels; *chance* is the overlap a random set would have.",
                "",
                *diagnostics_markdown(diagnostics),
                "",
            ]
        )
    atomic_write_text(out / f"{suite.name}.md", markdown)
    plot_suite(result, suite, out / f"{suite.name}.png")
    return result


def unfinished_rows(
    suite: Suite, rows: Sequence[dict[str, Any]], choices: dict[str, list[str] | None]
) -> list[dict[str, Any]]:
    """The rows of the suite's committed grid (`Suite.full_grid`, placeholders expanded by `choices`)
    that `rows` lack; only selected rows count. A placeholder not chosen yet stands for its rows under
    its own name."""
    finished = {(r["method"], r["ratio"], r["seed"], r["steps"]) for r in rows if r.get("selected")}
    wanted = []
    for method, ratio, seed, steps in suite.full_grid():
        names = (choices.get(method) or [method]) if suite.is_placeholder(method) else [method]
        for name in names:
            if suite.is_placeholder(name):
                wanted.append((name, ratio, seed, steps))
            else:
                spec = normalised(RowSpec(suite.name, name, ratio, seed, steps, None))
                wanted.append((spec.method, spec.ratio, spec.seed, spec.steps))
    keys = ("method", "ratio", "seed", "steps")
    return [dict(zip(keys, row, strict=True)) for row in dict.fromkeys(wanted) if row not in finished]


def diagnose_suite(out: Path, suite: Suite, rows: list[dict[str, Any]]) -> dict[str, dict]:
    """Diagnostics (`pat_lite.reproduce.diagnostics`) of every masked run — PAT's variants and the fixed-mask
    HSM baseline — of the first seed at the main ratio and run length, written to
    `<out>/<suite>-diagnostics.json`; runs diagnosed before (same run folder) are not redone and need no
    run folder, so a fresh clone, which has none, keeps the committed diagnostics."""
    from pat_lite.training.trainer import MASK_HISTORY

    path = out / f"{suite.name}-diagnostics.json"
    cached = json.loads(path.read_text()) if path.is_file() else {}
    first_seed = min((r["seed"] for r in rows), default=0)

    def diagnosable(row: dict[str, Any]) -> bool:
        main = (row["seed"], row["ratio"], row["steps"]) == (
            first_seed,
            suite.main_ratio,
            suite.default_steps,
        )
        run = run_folder(out, row)
        if not (row.get("selected") and main and run):
            return False
        return cached.get(row["method"], {}).get("run") == run.name or (run / MASK_HISTORY).is_file()

    wanted = {r["method"]: run_folder(out, r) for r in rows if diagnosable(r)}
    if not wanted:
        return {}
    todo = {m: d for m, d in wanted.items() if cached.get(m, {}).get("run") != d.name}
    if todo:
        from pat_lite.models.loading import load_model_and_tokenizer

        suite.set_threads()
        base, tokenizer = load_model_and_tokenizer(suite.base_model)
        calibration = suite.calibration(tokenizer)
        for method, run_dir in todo.items():
            cached[method] = {
                **diagnose(run_dir, base, calibration),
                "run": run_dir.name,
                "environment": environment(),
            }
    result = {m: cached[m] for m in wanted}
    atomic_write_text(path, json.dumps(result) + "\n")
    return result


def _distinct(values: list[Any]) -> list[Any]:
    """`values` without repeats, in order (unhashable dicts compared by their JSON)."""
    seen = {}
    for value in values:
        seen.setdefault(json.dumps(value, sort_keys=True), value)
    return list(seen.values())


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
