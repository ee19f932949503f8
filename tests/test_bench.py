"""pat_lite.bench.inference: ideal-speedup arithmetic, width choice, CSV/plot, clear errors (no timing)."""

from __future__ import annotations

import csv

import pytest
from transformers import LlamaConfig

import pat_lite.bench.common as bench_common
import pat_lite.bench.inference as bench
from pat_lite.cli import build_parser
from pat_lite.core.arch import width_for_ratio


def _tiny(**kw) -> LlamaConfig:
    base = dict(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=128, vocab_size=100, tie_word_embeddings=False,
    )  # fmt: skip
    base.update(kw)
    return LlamaConfig(**base)


def test_ideal_speedup_hand_computed():
    # d=64, attn=4*16=64, kv=2*16=32, I=128, V=100, L=2, T=8, width 48.
    # per-layer weights: d*attn + 2*d*kv + attn*d + 3*d*I = 4096+4096+4096+24576 = 36864 (48: 27648)
    # prefill = L*T*2*36864 + L*2*attn*T*(T+1) + 2*d*V = 1179648 + 18432 + 12800 = 1210880
    #   pruned: 2*8*2*27648 + 18432 + 2*48*100 = 884736 + 18432 + 9600 = 912768
    # decode (B=1, N=3 -> mean KV length 8+2 = 10): L*(36864+2d) + d + d*V + d + 2*L*kv*10
    #   = 73984 + 64 + 6400 + 64 + 1280 = 81792; pruned 55488 + 48 + 4800 + 48 + 1280 = 61664
    ideal = bench.ideal_speedup(_tiny(), 48, context=8, batch_size=1, decode_tokens=3)
    assert ideal["dense_prefill_flops"] == 1210880
    assert ideal["pruned_prefill_flops"] == 912768
    assert ideal["dense_decode_elements"] == 81792
    assert ideal["pruned_decode_elements"] == 61664
    assert ideal["prefill"] == pytest.approx(1210880 / 912768)
    assert ideal["decode"] == pytest.approx(81792 / 61664)
    # parameter count matches a real model of that config
    assert ideal["dense_params"] == 86848


def test_ideal_speedup_real_shapes_below_width_ratio():
    config = bench_common.resolve_config("llama2-7b")
    ideal = bench.ideal_speedup(config, 3072, context=128, batch_size=1, decode_tokens=16)
    # every matmul scales with d; attention core and KV cache keep both ratios a bit under 4096/3072
    assert 1.30 < ideal["prefill"] < 4096 / 3072
    assert 1.30 < ideal["decode"] < 4096 / 3072


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
    png = bench.plot_benchmark(rows, tmp_path / "bench.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    fig = bench.benchmark_figure(rows)
    assert fig.axes[3].get_title() == "estimated memory: weights + KV cache (MiB)"  # no peak was measured
    assert all(ax.get_xscale() == "linear" for ax in fig.axes)  # one batch size: no log axis around it
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["1"]
    assert "pruned" in bench.format_summary(rows)


@pytest.mark.slow
def test_memory_pass_measures_peak_rss_in_subprocess():
    rows = bench.measure_memory(_tiny(), dtype="float32", batch_sizes=[1, 2], context=8, decode_tokens=2)
    assert [r["batch_size"] for r in rows] == [1, 2]
    assert all(r["peak_rss_mib"] > 50 for r in rows)


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


def test_cli_reports_bad_input_as_usage_error(capsys):
    args = build_parser().parse_args(["bench", "--config", "no-such-preset", "--ratio", "0.25"])
    with pytest.raises(SystemExit) as exc:
        args.handler(args)
    assert exc.value.code == 2
    assert "not a preset" in capsys.readouterr().err


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
    assert files
    assert files
    for path in files:
        options = yaml.safe_load(path.read_text())
        assert set(options) <= set(bench.DEFAULT_OPTIONS), path
        bench_common.resolve_config(options["config"])
