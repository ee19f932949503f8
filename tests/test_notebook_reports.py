"""What notebooks 02-05 show, built by pat_lite.notebook instead of by hand in the cells: tables, figures and
sentences that say what their numbers mean (docs/method.md §9 for the paper's figures)."""

from __future__ import annotations

import math
import re
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
    assert {t.get_rotation() for t in paper_panel.texts} == {90.0}  # upright: neighbours never run together


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


def _full_bench_row(variant: str, width: int, speedup: float) -> dict:
    return {
        "variant": variant, "width": width, "runtime": "dynamic", "batch_size": 1, "ttft_ms": 2.13,
        "prefill_speedup_cpu": speedup, "prefill_speedup_ideal": 1.327, "prefill_speedup_ideal_honest": 1.161,
        "prefill_efficiency_honest_cpu": speedup / 1.161, "decode_ms_per_step": 1.25,
        "decode_speedup_cpu": 1.056, "decode_speedup_ideal_honest": 1.083,
        "decode_efficiency_honest_cpu": 0.976, "peak_rss_mib": "", "est_weights_kv_mib": 6.55,
    }  # fmt: skip


def test_the_benchmark_table_has_plain_column_names_and_formatted_cells():
    table = evaluation_report.benchmark_table(
        [_full_bench_row("dense", 256, 1.0), _full_bench_row("pruned", 192, 1.281)]
    )
    assert list(table.index) == ["dense, d = 256", "pruned, d = 192"]  # one runtime: not repeated per row
    assert table.loc["pruned, d = 192", "prefill speed-up, measured"] == "1.28×"
    assert table.loc["pruned, d = 192", "prefill, share of ideal"] == "110%"
    assert table.loc["dense, d = 256", "memory, estimated (MiB)"] == "6.5"  # no peak was measured
    assert not any(re.search(r"[a-z]_[a-z]", column) for column in table.columns)  # no CSV jargon


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
    schedule, offset = by_label["temperature τ"], by_label["offset β"]
    assert schedule.get_yscale() == "linear"  # tau barely moved: no log axis with 4×10^0 ticks
    assert offset.get_ylim() == pytest.approx((-0.02, 0.52))


def _log(steps: int, tau_from: int | None, active: int) -> list[dict]:
    rows = [
        {"step": s, "loss": 8.0 + s, "lm_loss": 3.0 + s, "sparsity_loss": 3.5, "identity_loss": 0.86,
         "active_channels": float(active), "tau": 1e6 if tau_from and s > tau_from else 1.0, "beta": 0.0,
         "milestone": float(tau_from or 100), "learning_rate": 3e-4, "lm_loss_soft": 3.7,
         "lm_loss_exact": 12.25, "mask_travel_budget": 3e-5}
        for s in range(1, steps + 1)
    ]  # fmt: skip
    return rows + [{"train_runtime": 1.0, "step": steps}]


def test_the_training_log_table_shows_the_learning_rate_as_it_is_and_plain_names():
    table = plots.training_log_table(_log(6, 2, 11), last=5)
    assert list(table.index) == ["2", "3", "4", "5", "6"]
    assert set(table["learning rate"]) == {"3.0e-04"}  # not 0.0003 rounded to 0.0
    assert "channels with W_M > 0" in table.columns and not any(
        "_" in c for c in table.columns if "W_M" not in c
    )


def test_the_loss_story_names_the_exact_mask_from_s0_and_the_count_term():
    summary = {"target_width": 432, "hidden_size": 576, "active_channels": 11}
    text = plots.describe_training_log(_log(6, 2, 11), summary)
    assert "from 9.00 at step 1 to 14.00 at step 6" in text
    assert "3.70 under the soft mask" in text and "12.25 under the exact 0/1 mask (a 25 % cut)" in text
    assert "s0 = 2 on (the log's step 3)" in text
    assert "10·|11 − 432|/432 = 9.7" in text and "3.0e-05" in text
    settled = plots.describe_training_log(_log(6, None, 432), {**summary, "active_channels": 432})
    assert "reached the target, 432 of 576" in settled and "exact mask" not in settled


def test_the_committed_studys_other_points_come_from_its_rows():
    rows = [{"method": m, "ratio": r, "steps": n, "selected": True}
            for m, r, n in [("lora", 0.0, 300), ("pat", 0.25, 300), ("pat", 0.2, 300), ("pat", 0.25, 600),
                            ("prune-ft-norm", 0.3, 300), ("pat", 0.3, 600)]]  # fmt: skip
    result = {"suite": "toy", "protocol": {"default_steps": 300}, "rows": rows}
    # (0.3, 600) differs from the main point (25 %, 300 steps) in both: no table to set it beside
    assert ablation_report.other_points(result) == [(0.2, 300), (0.3, 300), (0.25, 600)]


def test_methods_that_differ_only_by_a_default_setting_are_named_as_the_same_run():
    same = ablation_report.same_settings(["lora", "pat", "pat-schedule-released", "pat-schedule-paper"])
    assert same == {"pat-schedule-paper": "pat"}  # the paper's schedule is PATConfig's default
    note = ablation_report.same_settings_note(["pat-schedule-paper", "pat"])
    assert note.startswith("`pat-schedule-paper` trains with the same settings as `pat`")
    assert ablation_report.same_settings_note(["pat", "pat-frozen"]) == ""


def test_the_diagnostics_table_has_plain_headers_and_one_loss_column():
    diag = {"overlap_norm": 0.74, "overlap_energy": 0.766, "target": 432, "width": 576,
            "spearman_wm_vs_writer_norm": -0.162, "largest_activation_channels_cut": [3, 9],
            "lock_in": {"per_channel": [10, 10, 20]}, "milestone": 33,
            "gap": {"soft": [3.0, 3.08], "exact": [9.0, 19.1]}}  # fmt: skip
    table = ablation_report.diagnostics_table({"pat": diag, "pat-schedule-paper": diag})
    row = table.loc["pat"]
    assert row["∩ norm set"] == "74 %" and row["chance"] == "75 %" and row["ρ(W_M, norm)"] == "-0.16"
    assert (
        row["top-8 cut"] == "2"
        and row["decided by step"] == "10"
        and row["LM loss, soft → exact"] == "3.08 → 19.10"
    )
    assert table.loc["pat-schedule-paper", "note"] == "same settings as pat" and row["note"] == ""
    assert not any(re.search(r"[a-z]_[a-z]", column) for column in table.columns)  # no snake_case


def test_the_two_schedules_part_after_0_8_s0_and_only_the_papers_is_exact_after_s0():
    channels = torch.tensor([0.05, -0.05])
    released = plots.gate_values(channels, [80, 90, 120], 100, "released")
    paper = plots.gate_values(channels, [80, 90, 120], 100, "paper")
    assert torch.allclose(released[0], paper[0])  # the same gate up to 0.8 s0
    assert released[2].tolist() == pytest.approx([0.737, 0.263], abs=1e-3)  # frozen at τ(0.8 s0) = 20.6
    assert paper[1].tolist() == pytest.approx([0.899, 0.101], abs=1e-3)  # τ(0.9 s0) = 43.7: still soft
    assert paper[2].tolist() == [1.0, 0.0]  # the exact mask from s0 on
    fig = plots.plot_schedules(100)
    assert "(the default)" in fig.axes[0].get_legend().get_texts()[0].get_text()


def test_the_cut_quality_figure_marks_the_set_pat_kept_at_s0_once_in_its_legend():
    table = {"unit": "nats", "lower_is_better": True, "dense": 2.75, "rows": [
        {"label": "random (5 draws)", "chooser": "reference", "untuned": [9.0, 12.0],
         "energy_kept": [0.8, 0.8]},
        {"label": "`pat`, 300 steps", "chooser": "its run's mask (per seed)", "untuned": [8.4],
         "energy_kept": [0.7], "tuned": [4.3], "untuned_at_s0": [7.0], "changed_after_s0": [7]},
        {"label": "`pat-pca` (ours), 300 steps", "chooser": "its run's mask (per seed)", "untuned": [3.8],
         "energy_kept": [0.98], "tuned": [3.0], "untuned_at_s0": [3.8], "changed_after_s0": [0]},
    ]}  # fmt: skip
    ax = ablation_report.plot_cut_quality(table).axes[0]
    crosses = [line for line in ax.lines if line.get_marker() == "x"]
    assert [tuple(line.get_xydata()[0]) for line in crosses] == [(7.0, 1.0), (3.8, 2.0)]
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels.count("× untuned, set kept at s0") == 1
