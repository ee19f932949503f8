"""`pat-lite`: train, demo, eval, bench, bench-train, gpu-check — argument parsing only; the work happens in
the layers.

A user error (a `PatLiteError`: a wrong setting, a missing or broken file, a folder in use, a full disk)
prints one line, `pat-lite: error: ...`, and exits with status 2; Ctrl-C prints one line saying what to do
next (`pat-lite: interrupted: ...`) and exits with 130; `pat-lite --debug ...` shows the traceback. Any
other exception is a bug and keeps its traceback. Every command that writes a folder checks it and holds
it (`pat_lite.utils.output.writing_to`) before its work starts.

pat-lite train --config tiny max_steps=100 pat.hio_rank=8
pat-lite demo
pat-lite eval --model runs/pat-tiny/merged --tasks toy --scoring loglik
pat-lite bench --preset-file configs/bench/tinyllama-cpu.yaml
pat-lite bench-train --config tinyllama --num-layers 2
pat-lite gpu-check --out gpu-check.json
"""

from __future__ import annotations

import argparse
import errno
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from pat_lite.utils.errors import ConfigError, PatLiteError, one_line

USER_ERROR_STATUS = 2  # argparse's status for a usage error
INTERRUPTED_STATUS = 130  # the shell's status for a command ended by SIGINT (Ctrl-C)


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _str_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


# ------------------------------------------------------------------------------------------------ train
def _add_train(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="PAT- or LoRA-tune a model, then merge it (resumes an interrupted run with the same command)",
        description="Example: pat-lite train --config tiny max_steps=100 pat.hio_rank=8",
    )
    p.add_argument("--config", default="tiny", help="YAML path or a recipe name in configs/ (tiny, ...)")
    p.add_argument("overrides", nargs="*", help="KEY=VALUE settings, dotted keys for the pat section")

    def handler(args: argparse.Namespace) -> dict:
        from pat_lite.training.config import load_train_config
        from pat_lite.training.run import train

        return train(load_train_config(args.config, args.overrides)).summary

    p.set_defaults(handler=handler)


# ------------------------------------------------------------------------------------------------- demo
def _add_demo(sub: Any) -> None:
    p = sub.add_parser("demo", help="offline end-to-end PAT on the embedded tiny model, or --real (CPU)")
    p.add_argument("--real", action="store_true", help="SmolLM2-135M on held-out real text (much longer)")
    p.add_argument("--output-dir", default=None, help="default artifacts/demo (artifacts/demo-real)")
    p.add_argument("--config", default=None, help="training recipe (default tiny; smollm2 with --real)")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--limit", type=int, default=None, help="--real: documents / cloze items evaluated")

    def handler(args: argparse.Namespace) -> None:
        from pat_lite.demo import run_demo, run_real_demo
        from pat_lite.utils.output import writing_to

        output_dir = args.output_dir or ("artifacts/demo-real" if args.real else "artifacts/demo")
        with writing_to(output_dir, "--output-dir"):
            if args.real:
                run_real_demo(output_dir, args.config or "smollm2", args.max_steps, args.limit)
            else:
                run_demo(output_dir, args.config or "tiny", args.max_steps)

    p.set_defaults(handler=handler)


# ------------------------------------------------------------------------------------------------- eval
def _add_eval(sub: Any) -> None:
    from pat_lite.evaluation.lmeval import SCORINGS

    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint with lm-eval (toy sets, held-out real text or the paper's 14 tasks)",
        description="Evaluate a saved or merged checkpoint with lm-evaluation-harness.",
    )
    p.add_argument("checkpoint", nargs="?", help="checkpoint directory (same as --model)")
    p.add_argument("--model", help="checkpoint directory (a saved or merged HF model), smollm2-135m or tiny")
    p.add_argument(
        "--tasks", default="toy", help="toy | paper14 | realtext | comma-separated lm-eval task names"
    )
    p.add_argument("--scoring", choices=[*SCORINGS, "both"], default="both")
    p.add_argument("--limit", type=float, default=None, help="documents per task (int) or fraction (<1)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default=None, help="e.g. cpu, cuda (default: lm-eval's choice)")
    p.add_argument("--max-gen-toks", type=int, default=None, help="paper protocol generation length")
    p.add_argument("--toy-dir", default=None, help="folder with eval_<family>.jsonl (default data/toy)")
    p.add_argument("--out-dir", default=None, help="write eval_<set>_<scoring>.json/.md here")

    def handler(args: argparse.Namespace) -> int:
        from pat_lite.evaluation.lmeval import evaluate, to_markdown
        from pat_lite.models.loading import checkpoint_path
        from pat_lite.utils.device import check_device
        from pat_lite.utils.output import writing_to

        if bool(args.checkpoint) == bool(args.model):
            p.error("give the checkpoint once: `pat-lite eval --model DIR` (or `pat-lite eval DIR`)")
        limit = args.limit
        if limit is not None and limit >= 1:
            limit = int(limit)
        scorings = SCORINGS if args.scoring == "both" else (args.scoring,)
        if args.tasks == "realtext" and args.scoring == "both":
            scorings = ("loglik",)  # perplexity and cloze have no lettered (paper) protocol
        check_device(args.device)  # before an embedded model is converted
        with writing_to(args.out_dir, "--out-dir") if args.out_dir else nullcontext():
            model = checkpoint_path(args.model or args.checkpoint)
            for scoring in scorings:
                results = evaluate(
                    model,
                    tasks=args.tasks,
                    scoring=scoring,
                    limit=limit,
                    batch_size=args.batch_size,
                    out_dir=args.out_dir,
                    device=args.device,
                    toy_dir=args.toy_dir,
                    max_gen_toks=args.max_gen_toks,
                )
                print(to_markdown(results))
        return 0

    p.set_defaults(handler=handler)


# ------------------------------------------------------------------------------------------------ bench
@contextmanager
def _as_user_error(*kinds: type[Exception]) -> Iterator[None]:
    """The benchmarks report a value they cannot use as a ValueError: one line, like any user error."""
    try:
        yield
    except PatLiteError:
        raise
    except kinds as err:
        raise ConfigError(one_line(err)) from err


def _preset_options(path: str, known: dict[str, Any]) -> dict[str, Any]:
    """The options of a bench preset file (YAML), checked: one line for a missing file, bad YAML (a key
    given twice included) or an unknown option."""
    import yaml

    from pat_lite.utils.yamlfile import safe_load

    if not Path(path).is_file():
        raise ConfigError(f"no preset file {path}")
    try:
        loaded = safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: invalid YAML: {one_line(err)}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of options, not a {type(loaded).__name__}"
        )
    unknown = set(loaded) - set(known)
    if unknown:
        raise ConfigError(f"{path}: unknown options {sorted(unknown)}")
    return loaded


def _add_bench(sub: Any) -> None:
    from pat_lite.bench.common import PRESETS

    p = sub.add_parser(
        "bench", help="time dense vs PAT-pruned models (TTFT, decode tok/s, memory)",
        description="Compare a dense model with its narrower (PAT-merged) version: random weights, or the "
        "real ones of smollm2-135m. Writes bench.csv and bench.png to --out. Options not given come from "
        "--preset-file, then defaults.",
    )  # fmt: skip
    a = p.add_argument
    a("--config", "--model", dest="config", help=f"preset ({', '.join(PRESETS)}), local path or hub name; "
      "smollm2-135m means its real weights unless --weights random")  # fmt: skip
    a("--preset-file", help="YAML file of options (e.g. configs/bench/tinyllama-cpu.yaml)")
    a("--ratio", type=float, help="fraction of the hidden size removed (default 0.25)")
    a("--width", type=int, help="pruned width (overrides --ratio)")
    a("--alignment", type=int, help="pruned width multiple (default 64; 0: num_attention_heads only)")
    a("--unaligned", dest="compare_unaligned", action=argparse.BooleanOptionalAction,
      help="also time the nearest widths that miss the alignment (default on)")  # fmt: skip
    a("--extra-widths", type=_int_list, help="more widths to time, e.g. 1024,1280")
    a("--batch-sizes", type=_int_list, help="default 1,4,16")
    a("--dtypes", type=_str_list, help="default float32,bfloat16")
    a("--context", type=int, help="prompt length in tokens (default 128)")
    a("--decode-tokens", type=int, help="greedy decode steps timed (default 16)")
    a("--repeats", type=int, help="timed repeats, median reported (default 3)")
    a("--warmup", type=int, help="untimed runs per batch size first (default 1)")
    a("--num-layers", type=int, help="shorten the model (per-layer cost unchanged; lm_head share grows)")
    a("--device", help="auto (default), cpu, cuda, cuda:1")
    a("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    a("--memory", action=argparse.BooleanOptionalAction,
      help="extra pass per model for peak memory (CPU: fresh subprocess, peak RSS); default on")  # fmt: skip
    a("--runtimes", type=_str_list, help="comma-separated, timed in one interleaved run, the first is "
      "the baseline: dynamic (default) or static, +compile, +in_out (dynamic,static+compile)")  # fmt: skip
    a("--weights", choices=["auto", "random", "real"],
      help="real: embedded smollm2-135m or a local checkpoint; auto: real for smollm2-135m only")  # fmt: skip
    a("--floor", action=argparse.BooleanOptionalAction,
      help="time the model at negligible width: the honest ideal's fixed cost (default on)")  # fmt: skip
    a("--interleave", choices=["step", "generation"],
      help="step (default): the models take turns every decode step; generation: whole runs")  # fmt: skip
    a("--seed", type=int)
    a("--out", help="output directory (default artifacts/bench)")

    def handler(args: argparse.Namespace) -> int:
        from pat_lite.bench.common import write_csv
        from pat_lite.bench.inference import COLUMNS, DEFAULT_OPTIONS, run_benchmark
        from pat_lite.bench.report import format_summary, plot_benchmark
        from pat_lite.utils.output import writing_to

        opts = dict(DEFAULT_OPTIONS)
        if args.preset_file:
            opts.update(_preset_options(args.preset_file, opts))
        opts.update({k: v for k, v in vars(args).items() if k in opts and v is not None})
        with writing_to(opts.pop("out"), "--out") as out, _as_user_error(ValueError):
            rows = run_benchmark(opts.pop("config"), **opts)
            print(format_summary(rows))
            csv_path = write_csv(rows, out / "bench.csv", COLUMNS)
            print(f"wrote {csv_path} and {plot_benchmark(rows, out / 'bench.png')}")
        return 0

    p.set_defaults(handler=handler)


def _add_bench_train(sub: Any) -> None:
    p = sub.add_parser(
        "bench-train", help="PAT vs LoRA training step time and peak memory",
        description="Forward+backward+AdamW step of the same peft LoRA model with and without PAT (random "
        "weights). Writes bench_train.csv to --out.",
    )  # fmt: skip
    a = p.add_argument
    a("--config", "--model", dest="config", default="tinyllama", help="preset, local path or hub name")
    a("--num-layers", type=int, default=2, help="layers kept (default 2; 0 = all)")
    a("--batch-size", type=int, default=2)
    a("--seq-len", type=int, default=128)
    a("--steps", type=int, default=3, help="timed steps per method (median reported)")
    a("--warmup", type=int, default=1)
    a("--lora-r", type=int, default=8)
    a("--ratio", type=float, default=0.25, help="PAT pruning ratio")
    a("--hio-rank", type=int, default=None, help="default: hidden_size // 20")
    a("--dtype", default="float32")
    a("--device", default="auto")
    a("--threads", type=int, default=None)
    a("--memory", action=argparse.BooleanOptionalAction, default=True, help="peak-memory passes")
    a("--out", default="artifacts/bench")

    def handler(args: argparse.Namespace) -> int:
        from pat_lite.bench.common import write_csv
        from pat_lite.bench.training_cost import TRAIN_COLUMNS, format_train_summary, run_train_benchmark
        from pat_lite.utils.device import check_device
        from pat_lite.utils.output import writing_to

        with writing_to(args.out, "--out") as out, _as_user_error(ValueError):
            rows = run_train_benchmark(
                args.config, num_layers=args.num_layers or None, batch_size=args.batch_size,
                seq_len=args.seq_len, steps=args.steps, warmup=args.warmup, lora_r=args.lora_r,
                pruning_ratio=args.ratio, hio_rank=args.hio_rank, dtype=args.dtype,
                device=check_device(args.device), threads=args.threads, memory=args.memory,
            )  # fmt: skip
            print(format_train_summary(rows))
            print(f"wrote {write_csv(rows, out / 'bench_train.csv', TRAIN_COLUMNS)}")
        return 0

    p.set_defaults(handler=handler)


# ------------------------------------------------------------------------------------------- gpu-check
def _add_gpu_check(sub: Any) -> None:
    p = sub.add_parser(
        "gpu-check",
        help="GPU self-check for the paper's recipe: bf16 steps, speed, memory, projected hours, merge",
        description="On CUDA: tens of bf16 PAT training steps on SmolLM2-135M and on random models of "
        "Llama-2-7B's width (1 and 2 layers), step time, tokens/s, peak memory against the memory plan, "
        "the full recipe's projected hours, and the merge's exactness in bf16 and float32. Writes a JSON "
        "report to attach to a bug report. Without CUDA it says so and exits with status 2.",
    )
    p.add_argument("--out", default="gpu-check.json", help="the JSON report (default gpu-check.json)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per model (default 20; dry run 2)")
    p.add_argument(
        "--cpu-dry-run",
        action="store_true",
        help="run every part on the CPU with small models: checks the logic, measures no GPU",
    )

    def handler(args: argparse.Namespace) -> int:
        from pat_lite.bench.gpu_check import run_gpu_check
        from pat_lite.utils.output import output_file_location

        command = "pat-lite gpu-check" + (" --cpu-dry-run" if args.cpu_dry_run else "")
        out = output_file_location(args.out, "--out")  # before the check's minutes of work
        report = run_gpu_check(out, cpu_dry_run=args.cpu_dry_run, steps=args.steps, command=command)
        print("\n".join(report["verdicts"]))
        print(f"wrote {args.out}")
        return 0 if report["ok"] else 1

    p.set_defaults(handler=handler)


# -------------------------------------------------------------------------------------- build-tiny-base
def _add_build_tiny_base(sub: Any) -> None:
    p = sub.add_parser(
        "build-tiny-base",
        help="pre-train a tiny base on the toy world and check its gates (pat_lite ships one already)",
        description="Build the embedded tiny base from scratch (tokenizer, pre-training, quality gates) "
        "into --out. pat_lite ships the one it uses (data/tiny_base); this is for learning how it was "
        "made and for rebuilding it. Example: pat-lite build-tiny-base --out /tmp/tb epochs=6",
    )
    p.add_argument("--out", required=True, help="output folder (must be new or empty, unless --force)")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out folder")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default 1: fastest here)")
    p.add_argument("recipe", nargs="*", help="KEY=VALUE fields of TinyBaseRecipe, e.g. epochs=6")

    def handler(args: argparse.Namespace) -> dict:
        from pat_lite.models.tinybase import read_build_report
        from pat_lite.training.tinybase_build import build_tiny_base, recipe_from_overrides

        out = build_tiny_base(
            args.out, recipe_from_overrides(args.recipe), force=args.force, num_threads=args.threads
        )
        report = read_build_report(out)
        return {"out": str(out), "gates_passed": report["gates_passed"], "test": report["base"]["test"]}

    p.set_defaults(handler=handler)


# -------------------------------------------------------------------------------------------- reproduce
def _reproduce_command(args: argparse.Namespace) -> str:
    """The command a results file records: the grid options as given (not --out or --workers, which change
    where and how fast, not what)."""
    parts = ["pat-lite", "reproduce", "--suite", args.suite]
    for option, values in (("--methods", args.methods), ("--seeds", args.seeds), ("--ratios", args.ratios),
                           ("--steps", args.steps), ("--learning-rates", args.learning_rates)):  # fmt: skip
        if values:
            parts += [option, ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)]
    return " ".join(parts)


def _add_reproduce(sub: Any) -> None:
    from pat_lite.reproduce.suites import SUITES

    p = sub.add_parser(
        "reproduce",
        help="run a study: every method on the same data, steps and LoRA, several seeds; tables + figures",
        description="Without --methods/--seeds/--ratios/--steps: the suite's whole committed grid. Rows "
        "already in --out are kept, so re-running the same command after a crash resumes.",
    )
    p.add_argument("--suite", required=True, choices=sorted(SUITES))
    p.add_argument("--methods", type=_str_list, help="comma-separated method names (default: the suite's)")
    p.add_argument("--seeds", type=_int_list, help="e.g. 0,1,2")
    p.add_argument("--ratios", type=lambda t: [float(x) for x in _str_list(t)], help="e.g. 0.2,0.25,0.3")
    p.add_argument("--steps", type=_int_list, help="training steps per run, e.g. 300 or 300,1200")
    p.add_argument("--learning-rates", type=lambda t: [float(x) for x in _str_list(t)], help="the sweep")
    p.add_argument("--workers", type=int, help="rows run in parallel (fresh processes)")
    p.add_argument("--out", default="results", help="output folder (default results/)")
    p.add_argument(
        "--cut-quality", action=argparse.BooleanOptionalAction, default=None,
        help="score the cuts of the cut-quality table (default: only for the whole committed grid and "
        "--report-only; a partial run reports what the output folder already holds)",
    )  # fmt: skip
    p.add_argument(
        "--report-only", action="store_true",
        help="run nothing: write <suite>.json/.md/.png from the rows finished so far (during a long grid)",
    )  # fmt: skip

    def handler(args: argparse.Namespace) -> int:
        from pat_lite.reproduce.runner import run_suite, write_suite

        if args.report_only:
            from pat_lite.reproduce.suites import get_suite

            cut_quality = args.cut_quality is not False
            result = write_suite(Path(args.out), get_suite(args.suite), None, cut_quality=cut_quality)
            print(f"{len(result['rows'])} finished rows; wrote {args.out}/{args.suite}.json, .md and .png")
            return 0
        command = _reproduce_command(args)
        result = run_suite(
            args.suite, out=args.out, methods=args.methods, seeds=args.seeds, ratios=args.ratios,
            steps=args.steps, learning_rates=args.learning_rates, workers=args.workers, command=command,
            cut_quality=args.cut_quality,
        )  # fmt: skip
        print(f"{len(result['rows'])} rows; wrote {args.out}/{args.suite}.json, .md and .png")
        return 0

    p.set_defaults(handler=handler)


# -------------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    debug_help = "show the full traceback of an error (a user error prints one line without it)"
    parser = argparse.ArgumentParser(prog="pat-lite", description=__doc__.split("\n\n")[0])
    parser.add_argument("--debug", action="store_true", help=debug_help)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        _add_train,
        _add_demo,
        _add_eval,
        _add_bench,
        _add_bench_train,
        _add_gpu_check,
        _add_build_tiny_base,
        _add_reproduce,
    ):
        add(sub)
    for command in sub.choices.values():  # also accepted after the command: pat-lite train --debug ...
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    return parser


def _end_progress_bars() -> None:
    """Close the progress bars an error left open (training's, lm-eval's): a bar's line ends without a
    newline until it is closed, and the one error line must start a line of its own."""
    tqdm = sys.modules.get("tqdm.std")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        bar.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.handler(args)
    except PatLiteError as err:
        if args.debug:
            raise
        _end_progress_bars()
        # One line; only EvaluationDataUnavailable adds lines below it: the datasets and how to fetch them.
        print(f"pat-lite: error: {str(err).strip()}", file=sys.stderr)
        return USER_ERROR_STATUS
    except KeyboardInterrupt as interrupt:  # Ctrl-C: what was saved and how to go on, if the command knows
        if args.debug:
            raise
        _end_progress_bars()
        detail = one_line(interrupt)
        print(f"pat-lite: interrupted{': ' + detail if detail else ''}", file=sys.stderr)
        return INTERRUPTED_STATUS
    except OSError as err:  # a full disk anywhere a command wrote without knowing it
        if args.debug or err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        from pat_lite.utils.output import no_space_error

        _end_progress_bars()
        folder = Path(err.filename).parent if err.filename else Path.cwd()
        print(
            f"pat-lite: error: {no_space_error(folder, f'writing {err.filename or folder}')}", file=sys.stderr
        )
        return USER_ERROR_STATUS
    if isinstance(result, dict):
        print(json.dumps(result, indent=2, default=str))
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
