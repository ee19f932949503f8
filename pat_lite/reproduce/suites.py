"""The two studies `pat-lite reproduce` runs: the toy world (retention and skills) and SmolLM2 on real text.

A suite fixes, before any method runs: the base model, the training recipe and data, the step budget, the
learning-rate sweep, the evaluation (validation for choosing a learning rate, test for the table) and the
grid of rows that makes up the committed results. `Suite.build` turns one row into an evaluated model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from pat_lite.reproduce.methods import OUR_VARIANTS, get_method
from pat_lite.reproduce.rows import RowSpec, config_hash, load_row, normalised, run_folder
from pat_lite.utils.errors import ConfigError

#: Grid placeholders, expanded once the learning-rate sweep has run (`Suite.expand`): the `N` best of the
#: suite's `candidates`, and the best PAT variant (the paper's PAT, its released schedule, candidates), each
#: ranked by its validation headline at the sweep point — never by a test metric.
BEST_CANDIDATES = "best-candidates:"
BEST_PAT = "best-pat"


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    base_model: str
    recipe: str
    data: str
    default_steps: int
    learning_rates: tuple[float, ...]
    default_methods: tuple[str, ...]
    default_seeds: tuple[int, ...]
    main_ratio: float
    headline: str
    higher_is_better: bool
    #: Extra rows of the committed grid: (methods, ratios, seeds, steps); methods may use the placeholders
    #: `BEST_CANDIDATES + "N"` and `BEST_PAT`.
    extra_grids: tuple[tuple[tuple[str, ...], tuple[float, ...], tuple[int, ...], tuple[int, ...]], ...] = ()
    #: The methods `BEST_CANDIDATES` chooses among (our variants of PAT).
    candidates: tuple[str, ...] = ()
    #: The cut-quality table's measure: a metric of every row (`metrics[cut_metric]`) that `cut_score`
    #: computes for an untuned cut model too, its description and direction.
    cut_metric: str = "average"
    cut_measure: str = "the toy average accuracy, test split"
    cut_lower_is_better: bool = False
    threads: int = 1
    workers: int = 2
    metric_units: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------------------------------------ the grid
    def full_grid(self) -> list[tuple[str, float, int, int]]:
        """Every (method, ratio, seed, steps) of the committed grid, placeholders unexpanded."""
        rows = [
            (m, self.main_ratio, s, self.default_steps)
            for m in self.default_methods
            for s in self.default_seeds
        ]
        for methods, ratios, seeds, steps in self.extra_grids:
            rows += [(m, r, s, n) for m in methods for r in ratios for s in seeds for n in steps]
        return list(dict.fromkeys(rows))

    @staticmethod
    def is_placeholder(name: str) -> bool:
        return name == BEST_PAT or name.startswith(BEST_CANDIDATES)

    def placeholder_pool(self, name: str) -> tuple[str, ...]:
        """The methods a placeholder chooses among."""
        if name == BEST_PAT:
            return tuple(dict.fromkeys(("pat", "pat-schedule-released", *self.candidates)))
        return self.candidates

    def expand(self, name: str, validation: dict[str, float | None]) -> list[str]:
        """A method name, or the methods a placeholder stands for, given each method's validation
        headline at the sweep point (`validation`; ties go to the earlier name in the pool)."""
        if not self.is_placeholder(name):
            return [name]
        count = 1 if name == BEST_PAT else int(name[len(BEST_CANDIDATES) :])
        pool = self.placeholder_pool(name)
        missing = [m for m in pool if validation.get(m) is None]
        if missing:
            raise ConfigError(f"{name} needs the validation {self.headline} of {', '.join(missing)} first")
        sign = -1.0 if self.higher_is_better else 1.0
        ranked = sorted(pool, key=lambda m: (sign * validation[m], pool.index(m)))
        return ranked[:count]

    def protocol(self) -> dict[str, Any]:
        """What the JSON records about how rows were produced and chosen."""
        return {
            "base_model": self.base_model,
            "recipe": self.recipe,
            "data": self.data,
            "default_steps": self.default_steps,
            "learning_rates": list(self.learning_rates),
            "selection": (
                f"best validation {self.headline} on the first seed at ratio {self.main_ratio} and "
                f"{self.default_steps} steps; that learning rate for every other row of the method"
                if len(self.learning_rates) > 1
                else f"one learning rate for all methods ({self.learning_rates[0]:g}, the recipe's), no sweep"
            ),
            "headline": self.headline,
            "higher_is_better": self.higher_is_better,
            "candidates": list(self.candidates),
            "threads_per_row": self.threads,
        }

    def set_threads(self) -> None:
        torch.set_num_threads(self.threads)

    # ----------------------------------------------------------------------------------------- a model
    def build(self, spec, out: Path) -> tuple[Any, Any, dict[str, Any]]:
        """The evaluated model of one row (a plain transformers model), its tokenizer and what to record."""
        from pat_lite.models.loading import load_model_and_tokenizer

        method = get_method(spec.method)
        if method.tuned_from:
            source = normalised(replace(spec, method=method.tuned_from))
            source_row = load_row(out, RowSpec(**asdict(source)))
            model, tokenizer = load_model_and_tokenizer(str(run_folder(out, source_row) / "merged"))
            model = self.prune(model, tokenizer, method.prune_after, spec.ratio)
            return model, tokenizer, {"run_dir": source_row["run_dir"], "width_cut_after_tuning": True}
        if method.train is None:
            model, tokenizer = load_model_and_tokenizer(self.base_model)
            return model, tokenizer, {}
        base = self.base_model
        if method.prune_before:
            base = str(self.pruned_base(out, method.prune_before, spec.ratio))
        run_dir, cfg = self.run_config(out, spec, base)
        from pat_lite.training.run import SUMMARY, train

        if (run_dir / SUMMARY).is_file():
            model, tokenizer = load_model_and_tokenizer(str(run_dir / "merged"))
        else:
            result = train(cfg)
            model, tokenizer = result.merged, result.tokenizer
        return model.eval(), tokenizer, {"run_dir": str(run_dir.relative_to(out))}

    def train_key(self, out: Path, spec) -> str | None:
        """The training run folder a row uses (None for rows that do not tune)."""
        method = get_method(spec.method)
        if method.train is None or method.tuned_from:
            return None
        base = self.base_model
        if method.prune_before:
            base = str(self.pruned_base_dir(out, method.prune_before, spec.ratio))
        return str(self.run_config(out, spec, base)[0])

    def run_config(self, out: Path, spec, base: str):
        """The training run of a row: its folder (named by a hash of its settings) and TrainConfig."""
        from pat_lite.training.config import load_train_config

        method = get_method(spec.method)
        overrides: dict[str, Any] = {
            "model": base,
            "data": self.data,
            "seed": spec.seed,
            "learning_rate": spec.learning_rate,
            "max_steps": spec.steps,
            "report_to": [],
            "save_steps": max(50, spec.steps // 4),
            **(method.train or {}),
        }
        if method.pat_ratio:
            overrides["pat.pruning_ratio"] = spec.ratio
        texts = [f"{key}={json.dumps(value)}" for key, value in overrides.items()]
        probe = load_train_config(self.recipe, [*texts, "output_dir=unset"])
        settings = {k: v for k, v in asdict(probe).items() if k != "output_dir"}
        settings["pat"] = probe.pat_config.to_dict()  # PAT's defaults spelled out: equal runs share a folder
        run_dir = out / "runs" / self.name / "train" / f"run-{config_hash(settings)}"
        return run_dir, load_train_config(self.recipe, [*texts, f"output_dir={json.dumps(str(run_dir))}"])

    # ------------------------------------------------------------------------------------------- cuts
    def prune(self, model, tokenizer, kind: str, ratio: float):
        """A plain narrower model: the norm cut or the PCA slice of `model` at `ratio`."""
        from pat_lite.baselines import norm_cut, pca_slice
        from pat_lite.core.arch import width_for_ratio

        width = width_for_ratio(model.config, ratio)
        if kind == "norm":
            return norm_cut(model, width)
        if kind == "pca":
            return pca_slice(model, width, self.calibration(tokenizer))
        raise ValueError(f"unknown cut {kind!r}")

    def pruned_base_dir(self, out: Path, kind: str, ratio: float) -> Path:
        return out / "runs" / self.name / "pruned_base" / f"{kind}-r{ratio:g}"

    def pruned_base(self, out: Path, kind: str, ratio: float) -> Path:
        """The base model cut to `ratio` (shared by every row that tunes it), saved once, atomically."""
        from pat_lite.models.loading import load_model_and_tokenizer
        from pat_lite.utils.atomic import atomic_directory

        folder = self.pruned_base_dir(out, kind, ratio)
        if (folder / "config.json").is_file():
            return folder
        model, tokenizer = load_model_and_tokenizer(self.base_model)
        pruned = self.prune(model, tokenizer, kind, ratio)

        def write(tmp: Path) -> None:
            pruned.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)

        return atomic_directory(folder, write)

    def calibration(self, tokenizer) -> list[dict[str, torch.Tensor]]:
        """The residual-stream calibration batches of this suite's data: the same ones `train()` gives
        PAT's informed starts (`pat_lite.data.instructions.calibration_batches`)."""
        from pat_lite.data.instructions import calibration_batches, load_instruction_data

        return calibration_batches(load_instruction_data(self.data), tokenizer)

    # ------------------------------------------------------------------------------------------ scores
    def evaluate(self, model, tokenizer, split: str) -> dict[str, float]:
        """The row's metrics on `split`: "test" for the tables, "validation" for choosing a learning rate
        (computed only for the rows of the sweep)."""
        if self.name == "toy":
            from pat_lite.evaluation.mc import toy_scores

            scores = toy_scores(model, tokenizer, split=split)
            return {k: float(scores[k]) for k in ("retention", "skill", "average")}
        from pat_lite.evaluation.lmeval import evaluate

        if split == "validation":
            from pat_lite.evaluation.realtext_tasks import REALTEXT_VALIDATION_TASK

            tasks = evaluate(
                model, tokenizer, tasks=[REALTEXT_VALIDATION_TASK], scoring="loglik", batch_size=8
            )
            return {"perplexity": tasks["tasks"][REALTEXT_VALIDATION_TASK]["metrics"]["word_perplexity"]}
        tasks = evaluate(model, tokenizer, tasks="realtext", scoring="loglik", batch_size=8)["tasks"]
        return {
            "perplexity": tasks["realtext_perplexity"]["metrics"]["word_perplexity"],
            "cloze": 100 * tasks["realtext_cloze"]["acc"],
            "heldout_loss": self.heldout_loss(model, tokenizer),
        }

    def cut_score(self, model, tokenizer) -> float:
        """The cut-quality measure of one model: the same computation as the rows' `cut_metric`."""
        if self.cut_metric == "heldout_loss":
            return self.heldout_loss(model, tokenizer)
        from pat_lite.evaluation.mc import toy_scores

        return float(toy_scores(model, tokenizer, split="test")[self.cut_metric])

    def heldout_loss(self, model, tokenizer) -> float:
        """Mean next-token loss on the first tokens of the held-out documents
        (`pat_lite.evaluation.heldout_loss`): the unit the cut-quality table shares with tuned models."""
        from pat_lite.data.realtext import load_realtext_documents
        from pat_lite.evaluation.heldout_loss import heldout_loss

        return heldout_loss(model, tokenizer, [d["text"] for d in load_realtext_documents()])


SUITES: dict[str, Suite] = {
    "toy": Suite(
        name="toy",
        description="the embedded toy world: retention of facts and in-context skills (docs/method.md §10)",
        base_model="tiny",
        recipe="tiny",
        data="toy",
        default_steps=300,
        # The grid is sized to the 2-core budget (~1.5 CPU-minutes per 300-step row): one learning rate
        # for every method (the recipe's 2e-3; a sweep would double the cost), three seeds for the methods
        # the paper compares, the two ablations of its Table 2 and our variants, the first seed for the
        # other variants and axes (ratios 20 and 30 %, a run twice as long). `pat` is the paper's schedule
        # (the default), so there is no separate `pat-schedule-paper` row.
        learning_rates=(2e-3,),
        default_methods=(
            "dense",
            "lora",
            "prune-ft-norm",
            "prune-ft-pca",
            "prune-ft-norm-hsm",
            "ft-prune-norm",
            "ft-prune-pca",
            "pat",
            "pat-schedule-released",
            "pat-frozen",
            "pat-no-identity",
            *OUR_VARIANTS,
        ),  # fmt: skip
        default_seeds=(0, 1, 2),
        main_ratio=0.25,
        headline="average",
        higher_is_better=True,
        extra_grids=(
            (
                ("pat-paper-identity", "pat-mask-lr-auto", "pat-mask-lr-10", "pat-hio-4", "pat-hio-16"),
                (0.25,),
                (0,),
                (300,),
            ),
            (("pat", "prune-ft-norm", "prune-ft-pca", "ft-prune-norm"), (0.2, 0.3), (0,), (300,)),
            (("pat", "prune-ft-norm"), (0.25,), (0,), (600,)),
        ),  # fmt: skip
        threads=1,
        workers=2,
        metric_units={"retention": "%", "skill": "%", "average": "%"},
    ),
    "smollm2": Suite(
        name="smollm2",
        description="SmolLM2-135M (real weights) tuned on real English text, held-out text evaluation",
        base_model="smollm2-135m",
        recipe="smollm2",
        data="realtext",
        # The sweep point: every method at 100 steps with two learning rates, chosen on the validation
        # units' perplexity (data/realtext: never tuned on, never the test); the chosen rate serves the
        # longer runs. Then 300 steps (s0 = 100) for the compared methods and our variants, with three
        # seeds for LoRA, the two prune -> tune baselines, the paper's PAT and the two of our variants
        # best on validation; 1,000 steps for the PCA baseline and the best PAT variant on validation.
        # Measured cost: ~6.5 CPU-s per step of 4 x 128 tokens, ~3 CPU-minutes of evaluation per row.
        default_steps=100,
        learning_rates=(3e-4, 1e-3),
        default_methods=(
            "dense",
            "lora",
            "prune-ft-norm",
            "prune-ft-norm-hsm",
            "prune-ft-pca",
            "ft-prune-norm",
            "ft-prune-pca",
            "pat",
            "pat-schedule-released",
            *OUR_VARIANTS,
        ),  # fmt: skip
        default_seeds=(0,),
        main_ratio=0.25,
        headline="perplexity",
        higher_is_better=False,
        extra_grids=(
            (("lora", "prune-ft-norm", "prune-ft-pca", "pat", *OUR_VARIANTS), (0.25,), (0,), (300,)),
            (
                ("lora", "prune-ft-norm", "prune-ft-pca", "pat", f"{BEST_CANDIDATES}2"),
                (0.25,),
                (1, 2),
                (300,),
            ),
            (("prune-ft-pca", BEST_PAT), (0.25,), (0,), (1000,)),
        ),  # fmt: skip
        candidates=OUR_VARIANTS,
        cut_metric="heldout_loss",
        cut_measure="the mean next-token loss on the first 4,096 tokens of the held-out documents",
        cut_lower_is_better=True,
        # Two rows at a time with one thread each: on 2 shared cores one thread per process was measured
        # much faster than two (a step of 4 x 128 tokens: ~7 s CPU with one thread).
        threads=1,
        workers=2,
        metric_units={"perplexity": "", "cloze": "%", "heldout_loss": "nats"},
    ),
}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise ConfigError(f"unknown suite {name!r}; choose one of {', '.join(SUITES)}")
    return SUITES[name]
