"""What both benchmarks share: model shapes, random-weight models, fresh-process workers and CSV output.

`pat_lite.bench.inference` (dense vs pruned speed) and `pat_lite.bench.training_cost` (PAT vs LoRA step
cost) both time models whose weights are random (speed does not depend on the values) and measure CPU
peak memory in a fresh subprocess, so that the peak belongs to one measurement alone.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, GemmaConfig, LlamaConfig, PretrainedConfig

from pat_lite.utils.checkpoints import looks_like_path
from pat_lite.utils.errors import ConfigError

#: Model shapes by name (the real models' configs, so no download is needed to time them).
PRESETS: dict[str, dict[str, Any]] = {
    "tinyllama": dict(
        cls="llama",
        hidden_size=2048,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        intermediate_size=5632,
        vocab_size=32000,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
    ),
    "llama2-7b": dict(
        cls="llama",
        hidden_size=4096,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        intermediate_size=11008,
        vocab_size=32000,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
    ),
    "llama2-13b": dict(
        cls="llama",
        hidden_size=5120,
        num_hidden_layers=40,
        num_attention_heads=40,
        num_key_value_heads=40,
        intermediate_size=13824,
        vocab_size=32000,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
    ),
    # SmolLM2-135M (the project's embedded real model, pat_lite.models.smollm2): 25 % of 576 is 432.
    "smollm2-135m": dict(
        cls="llama",
        hidden_size=576,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        intermediate_size=1536,
        vocab_size=49152,
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
        rope_theta=100000.0,
        tie_word_embeddings=True,
    ),
    "gemma-2b": dict(
        cls="gemma",
        hidden_size=2048,
        num_hidden_layers=18,
        num_attention_heads=8,
        num_key_value_heads=1,
        head_dim=256,
        intermediate_size=16384,
        vocab_size=256000,
        max_position_embeddings=8192,
        rms_norm_eps=1e-6,
        hidden_act="gelu_pytorch_tanh",
        tie_word_embeddings=True,
    ),
}

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class BenchConfigError(ConfigError):
    """A model name, path or option the benchmark cannot use (a ValueError: `pat-lite` prints one line)."""


def resolve_config(config_or_name: PretrainedConfig | str, num_layers: int | None = None) -> PretrainedConfig:
    """A config from a preset name, a local path, a hub name (offline: clear error) or a config object.

    `num_layers` shortens the model for quicker runs: per-layer cost is unchanged, but the embedding and
    lm_head then weigh more in the totals (in decode above all, where lm_head is a full weight read).
    """
    if isinstance(config_or_name, PretrainedConfig):
        config = type(config_or_name).from_dict(config_or_name.to_dict())
    elif config_or_name in PRESETS:
        kwargs = dict(PRESETS[config_or_name])
        cls = {"llama": LlamaConfig, "gemma": GemmaConfig}[kwargs.pop("cls")]
        kwargs.setdefault("tie_word_embeddings", False)
        config = cls(**kwargs)
        config.name_or_path = config_or_name
    else:
        name = str(config_or_name)
        if looks_like_path(name) and not os.path.exists(name):
            raise BenchConfigError(
                f"no model folder at {name}: no such file or folder; give a preset ({', '.join(PRESETS)}) "
                "or a local folder holding config.json"
            )
        try:
            config = AutoConfig.from_pretrained(name)
        except (OSError, ValueError) as err:
            where = "the local path" if os.path.exists(name) else "the Hugging Face hub"
            raise BenchConfigError(
                f"{name!r} is not a preset ({', '.join(PRESETS)}) and its config could not be loaded from "
                f"{where} ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
                "This machine may be offline (HF_HUB_OFFLINE=1): pass a preset name or a local directory "
                "holding config.json."
            ) from err
        config.name_or_path = name
    if num_layers is not None:
        if num_layers < 1:
            raise BenchConfigError(f"num_layers must be >= 1, got {num_layers}")
        config.num_hidden_layers = int(num_layers)
        if getattr(config, "layer_types", None):
            config.layer_types = list(config.layer_types)[:num_layers]
    return config


def build_random_model(
    config: PretrainedConfig, dtype: torch.dtype, device: str, seed: int
) -> torch.nn.Module:
    """A random-weight model; skips transformers' slow init and fills weights with small uniform values."""
    from transformers import AutoModelForCausalLM

    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # older transformers: plain (slower) init
        from contextlib import nullcontext as no_init_weights
    with no_init_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.tie_weights()  # no_init_weights skips the tying, which would double a tied model's embedding
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.copy_(torch.rand(p.shape, generator=gen).sub_(0.5).mul_(0.04))
            else:
                p.fill_(1.0)
    return model.to(device).eval()


@dataclass(frozen=True)
class ModelSource:
    """What to time: a config with random weights, or (`checkpoint`) a saved model folder's real weights."""

    config: PretrainedConfig
    checkpoint: str | None = None


def load_model(source: ModelSource, dtype: torch.dtype, device: str, seed: int) -> torch.nn.Module:
    """The model of `source` in eval mode: random weights (`build_random_model`) or the checkpoint's."""
    if source.checkpoint is None:
        return build_random_model(source.config, dtype, device, seed)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(source.checkpoint, dtype=dtype, use_safetensors=True)
    return model.to(device).eval()


def sync(device: str) -> None:
    """Wait for queued GPU work (timing needs it); nothing on a CPU."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB."""
    import resource

    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec,
    # so a small worker started by a large parent would report the parent's peak.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB (macOS: bytes)


def in_fresh_process(module: str, config: PretrainedConfig, spec: dict[str, Any]) -> Any:
    """Run `python -m <module> --worker DIR` on `config` + `spec` and return what its worker stored.

    A fresh process, so its peak RSS belongs to this one measurement (a child inherits no parent peak)."""
    with tempfile.TemporaryDirectory(prefix="pat_bench_") as tmp:
        config.save_pretrained(tmp)
        Path(tmp, "spec.json").write_text(json.dumps(spec))
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])  # the folder holding pat_lite
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        proc = subprocess.run(
            [sys.executable, "-m", module, "--worker", tmp], capture_output=True, text=True, env=env
        )
        if proc.returncode:
            raise RuntimeError(f"{module} worker failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
        return json.loads(Path(tmp, "result.json").read_text())


def worker_inputs(tmp: str) -> tuple[PretrainedConfig, dict[str, Any]]:
    """The worker side of `in_fresh_process`: the config and the spec it was given."""
    return AutoConfig.from_pretrained(tmp), json.loads(Path(tmp, "spec.json").read_text())


def worker_output(tmp: str, result: Any) -> None:
    Path(tmp, "result.json").write_text(json.dumps(result))


def write_csv(rows: Sequence[dict[str, Any]], path: str | os.PathLike, columns: Sequence[str]) -> Path:
    """Write benchmark rows under the header `columns` (floats: 4 significant digits; missing: empty)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore", restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in row.items()})
    return path
