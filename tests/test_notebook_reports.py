"""What notebooks 02-05 show, built by pat_lite.notebook instead of by hand in the cells: tables, figures and
sentences that say what their numbers mean (docs/method.md §9 for the paper's figures)."""

from __future__ import annotations

import math
import warnings

import pandas as pd
import pytest
import torch
import yaml
from tiny_models import tiny_checkpoint, write_instruction_file

from pat_lite.notebook import ablations as ablation_report
from pat_lite.notebook import evaluation as evaluation_report
from pat_lite.notebook import plots

# ------------------------------------------------------------------------------------- lm-eval results


def _loglik(n_choices: list[int], accs: list[float]) -> dict:
    """An `evaluate(..., log_samples=True)` result of two toy tasks under log-likelihood scoring."""
    tasks, samples = {}, {}
    for name, n, acc in zip(("toy_city", "toy_pet"), n_choices, accs, strict=True):
        tasks[name] = {"label": name[4:], "acc": acc}
        samples[name] = [{"resps": [[[-1.0, False]]] * n, "filtered_resps": [], "target": 0, "acc": acc}] * 2
    return {"scoring": "loglik", "tasks": tasks, "samples": samples, "average": sum(accs) / len(accs)}


def _paper(answers: list[str], letters: list[str], acc: float) -> dict:
    samples = [
        {"resps": [[text]], "filtered_resps": [letter], "target": "B", "acc": float(letter == "B")}
        for text, letter in zip(answers, letters, strict=True)
    ]
    return {
        "scoring": "paper",
        "tasks": {"toy_pet_paper": {"label": "pet", "acc": acc}},
        "samples": {"toy_pet_paper": samples},
        "average": acc,
    }


@pytest.fixture
def results():
    return {
        ("dense", "loglik"): _loglik([4, 2], [1.0, 0.5]),
        ("LoRA", "loglik"): _loglik([4, 2], [1.0, 1.0]),
        ("PAT", "loglik"): _loglik([4, 2], [0.75, 0.5]),
        ("dense", "paper"): _paper(
            ["Bekrur Fufen has a pet parrot.", "B", "(C) cat"], ["B", "B", "C"], 0.125
        ),
        ("LoRA", "paper"): _paper(["a cat"], ["[invalid]"], 0.03),
        ("PAT", "paper"): _paper(["a cat"], ["[invalid]"], 0.0),
    }


def test_the_accuracy_table_holds_percent_per_task_then_the_average(results):
    table = evaluation_report.accuracy_table(results)
    assert list(table.columns) == ["dense", "LoRA", "PAT"]
    assert list(table.loc["loglik"].index) == ["city", "pet", "average"]
    assert table.loc[("loglik", "average"), "PAT"] == pytest.approx(62.5)
    assert table.loc[("paper", "pet"), "dense"] == pytest.approx(12.5)


def test_chance_comes_from_the_number_of_choices_of_each_document(results):
    chance = evaluation_report.chance_levels(results["dense", "loglik"])
    assert chance == pytest.approx({"city": 25.0, "pet": 50.0, "average": 37.5})
    with pytest.raises(ValueError, match="loglik"):
        evaluation_report.chance_levels(results["dense", "paper"])


def test_only_a_lone_letter_counts_as_an_answer_in_the_papers_form(results):
    # "B" and "(C) cat" answer with a letter; the B that the protocol reads from a name does not count.
    assert evaluation_report.letter_answer_rate(results["dense", "paper"]) == pytest.approx(200 / 3)
    examples = evaluation_report.paper_answer_examples(results["dense", "paper"], n=2)
    assert list(examples["generated answer"]) == ["Bekrur Fufen has a pet parrot.", "B"]
    assert list(examples["letter read"]) == ["B", "B"] and list(examples["correct"]) == [True, True]


def test_the_paper_comparison_gives_no_ratio_where_lora_is_not_above_chance(results):
    frame = evaluation_report.paper_comparison(results, "tiny (toy)", chance=37.5)
    paper = frame.loc["paper, Llama2-7B (14 tasks)"]
    assert paper["PAT / LoRA"] == pytest.approx(60.02 / 58.76)
    assert frame.loc["ours, tiny (toy), loglik", "PAT / LoRA"] == pytest.approx(62.5 / 100)
    below = frame.loc["ours, tiny (toy), paper"]
    assert math.isnan(below["PAT / LoRA"]) and "not above chance (38 %)" in below["note"]


def test_accuracy_figure_keeps_one_legend_clear_of_the_bars_and_labels_every_bar(results):
    table = evaluation_report.accuracy_table(results)
    fig = evaluation_report.plot_accuracy(table, evaluation_report.chance_levels(results["dense", "loglik"]))
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)
    labels = [t.get_text() for t in fig.legends[0].texts]
    assert labels == ["dense", "LoRA", "PAT", "chance (uniform guess)"]
    paper_panel = fig.axes[1]
    assert "0" in [t.get_text() for t in paper_panel.texts]  # PAT's 0 % is written, not an invisible bar


def test_a_missing_ratio_is_explained_on_the_figure_instead_of_an_empty_bar(results):
    frame = evaluation_report.paper_comparison(results, "tiny (toy)", chance=37.5)
    fig = evaluation_report.plot_paper_comparison(frame)
    (ax,) = fig.axes
    assert len(ax.patches) == 2  # paper and loglik rows; the paper-scoring row has no bar
    assert any("not above chance" in t.get_text() for t in ax.texts)


def test_ideal_speedups_of_the_papers_models_are_close_to_four_thirds():
    table = evaluation_report.ideal_speedup_table()
    assert table.loc["llama2-7b", "d'"] == 3072
    assert table.loc["llama2-7b", "ideal prefill speedup"] == pytest.approx(1.33, abs=0.01)
    assert table.loc["llama2-7b", "parameters (B)"] == pytest.approx(6.74, abs=0.01)


def _bench_row(variant: str, params: float, repeats: int = 5, load: float = 0.0) -> dict:
    return {
        "variant": variant, "dtype": "float32", "batch_size": 1, "width": 48, "params": params,
        "repeats": repeats, "threads": 1, "loadavg_1m": load, "prefill_speedup": 1.1,
        "prefill_speedup_cpu": 1.2, "prefill_speedup_ideal": 1.33, "decode_speedup": 1.0,
        "decode_speedup_cpu": 1.05, "decode_speedup_ideal": 1.33,
    }  # fmt: skip


def test_smoke_timings_are_labelled_as_not_timing_grade():
    tiny = evaluation_report.timing_grade_note([_bench_row("dense", 1.2e6, repeats=1)])
    assert tiny.startswith("**Not timing-grade:**") and "1 timed repeat" in tiny and "1.2 M-parameter" in tiny
    busy = evaluation_report.timing_grade_note([_bench_row("dense", 1e9, load=1000.0)])
    assert "machine was busy" in busy
    assert evaluation_report.timing_grade_note([_bench_row("dense", 1e9)]).startswith("Timing: median of 5")


# ---------------------------------------------------------------------------------------------- ablations
def _runs() -> pd.DataFrame:
    rows = []
    for ratio, variant, rank, acc in [
        (0.25, "frozen mask", 8, 60.0), (0.25, "no identity loss", 8, 70.0), (0.25, "full PAT", 8, 72.0),
        (0.3, "frozen mask", 8, 50.0), (0.3, "no identity loss", 8, 55.0), (0.3, "full PAT", 8, 65.0),
        (0.25, "full PAT", 2, 68.0), (0.25, "full PAT", 16, 74.0),
    ]:  # fmt: skip
        name = ablation_report.run_name(ratio, variant, rank)
        rows.append({"ratio": ratio, "variant": variant, "rank": rank, "accuracy (%)": acc, "run": name,
                     "target": 96})  # fmt: skip
    return pd.DataFrame(rows)


def test_the_plan_runs_every_variant_per_ratio_and_every_rank_once():
    plan = ablation_report.ablation_plan([0.25, 0.3], [2, 8, 16], default_rank=8)
    assert len(plan) == 2 * 3 + 2  # rank 8 full PAT at 25 % is planned once
    assert plan[0.25, "frozen mask", 8] == {"pat.mask_mode": "frozen"}
    assert plan[0.3, "no identity loss", 8] == {"pat.identity_loss": "off"}
    assert (0.25, "full PAT", 16) in plan and (0.3, "full PAT", 16) not in plan


def test_table2_sets_ours_beside_the_papers_in_the_papers_order():
    side = ablation_report.table2_side_by_side(_runs(), rank=8)
    ours = side["ours (tiny model, toy facts)"]
    assert list(ours.columns) == ["frozen mask", "no identity loss", "full PAT"]
    assert ours.loc[0.3, "full PAT"] == 65.0
    assert side["paper (Llama-2-7B, 14 tasks)"].loc[0.25, "full PAT"] == 60.02
    only_25 = ablation_report.table2_side_by_side(_runs()[lambda r: r["ratio"] == 0.25], rank=8)
    assert list(only_25.index) == [0.25]  # no row of empty "ours" cells for a ratio that was not run


def test_ablation_figures_put_ticks_at_the_values_that_were_run():
    runs = _runs()
    fig = ablation_report.plot_ratio_and_rank(runs, ratio=0.25, rank=8, dense_accuracy=99.0)
    ratio_ax, rank_ax = fig.axes
    assert [t.get_text() for t in ratio_ax.get_xticklabels()] == ["25%", "30%"]
    assert [t.get_text() for t in rank_ax.get_xticklabels()] == ["2", "8", "16"]
    table2 = ablation_report.plot_table2(ablation_report.table2_side_by_side(runs, 8), dense_accuracy=99.0)
    assert [t.get_text() for t in table2.legends[0].texts][-1] == "dense base, untuned"
    logs = {name: pd.DataFrame({"step": [5, 10], "active_channels": [90, 96], "lm_loss": [2.0, 1.5]})
            for name in runs["run"]}  # fmt: skip
    curves = ablation_report.plot_ablation_curves(runs, logs, ratio=0.25, rank=8)
    assert len(curves.axes[0].lines) == 3 + 1  # three variants and the target line
    assert curves.axes[1].get_yscale() == "linear"  # 2.0 -> 1.5 needs no log axis


def test_one_ablation_run_trains_merges_and_scores_the_merged_model(tmp_path):
    base = tiny_checkpoint(tmp_path / "base")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "data": str(write_instruction_file(tmp_path / "data.jsonl")), "data_fraction": 1.0, "max_length": 32,
        "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1, "learning_rate": 0.01,
        "warmup_steps": 0, "pat": {"milestone_step": 2},
    }))  # fmt: skip
    items = [{"context": "alba lives in", "choices": ["veldra", "mornhal"], "answer": 0, "family": "city"}]
    run = ablation_report.run_ablation(
        (0.25, "frozen mask", 4), {"pat.mask_mode": "frozen"}, base_model=str(base), train_config=str(recipe),
        max_steps=5, output_dir=tmp_path / "runs", items=items,
    )  # fmt: skip
    record = run.record
    assert (
        record["run"] == "r0.25-frozen_mask-rank4" and (tmp_path / "runs" / record["run"] / "merged").is_dir()
    )
    assert record["width"] == 48 and record["target"] == 48 and record["active channels"] == 48
    assert record["HIO parameters"] == 5 * (2 * 4 * 64 + 64)  # 1 + 2 layers × 2 HSMs, each L0, L1, s
    assert record["accuracy (%)"] in (0.0, 100.0)
    assert list(run.log["step"]) == [5] and run.summary["steps"] == 5 and record["final lm loss"] > 0


# ------------------------------------------------------------------------------------------ training log
def test_the_mask_outcome_is_a_sentence_that_says_whether_the_count_reached_the_target():
    done = {"active_channels": 96, "target_width": 96, "hidden_size": 128, "steps": 300}
    assert plots.mask_outcome(done) == "The mask kept exactly the target: 96 of 128 channels have W_M > 0."
    short = plots.mask_outcome(done | {"active_channels": 97, "steps": 20})
    assert "97 channels above zero, not the target 96: 20 steps were too few" in short
    assert "the merge keeps the 96 channels with the largest w_m" in short.lower()
    assert plots.mask_outcome({"steps": 20}).startswith("A LoRA run")


def test_only_the_mask_count_warning_is_quieted():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with plots.quiet_mask_count_warning():
            warnings.warn("the trained mask keeps 97 channels (W_M > 0), not the target 96", stacklevel=1)
            warnings.warn("something else", stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else"]


def test_mask_history_figure_shows_the_histogram_and_kept_and_dropped_channels():
    steps = [1, 2, 3]
    proxies = [torch.tensor([0.1, -0.1, 0.2, -0.2]) * k for k in steps]
    fig = plots.plot_mask_history(steps, proxies, bins=8, shown=4)
    heat, lines = fig.axes[0], fig.axes[1]  # fig.axes[2] is the colour bar
    assert heat.images[0].get_array().shape == (8, 3)
    colours = sorted(line.get_color() for line in lines.lines if len(line.get_xdata()) == 3)
    assert colours == ["tab:blue", "tab:blue", "tab:red", "tab:red"]


def test_training_log_plot_keeps_beta_on_its_own_fixed_axis():
    log = [{"loss": 1.0, "step": s, "lm_loss": 1.0, "tau": 1.0 + s / 10, "beta": max(0.5 - s / 4, 0.0),
            "active_channels": 96.0} for s in (1, 2, 3)]  # fmt: skip
    fig = plots.plot_training_log(log + [{"train_runtime": 1.0, "step": 3}], target_width=96)
    by_label = {ax.get_ylabel(): ax for ax in fig.axes}
    schedule, offset = by_label["temperature tau"], by_label["offset beta"]
    assert schedule.get_yscale() == "linear"  # tau barely moved: no log axis with 4×10^0 ticks
    assert offset.get_ylim() == pytest.approx((-0.02, 0.52))
