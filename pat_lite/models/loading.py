"""Loading base models and tokenizers: the embedded tiny base, a local checkpoint or a hub name."""

from __future__ import annotations

import os

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from pat_lite.utils.checkpoints import check_model_folder
from pat_lite.utils.errors import CheckpointError, PatLiteError, one_line


class ModelUnavailableError(PatLiteError, RuntimeError):
    """A model that is neither local nor reachable (offline hub)."""


def load_model_and_tokenizer(name_or_path: str, dtype: str = "float32", trust_remote_code: bool = False):
    """`(model, tokenizer)` with stock Auto classes and safetensors.

    "tiny" → the embedded tiny base (built once and cached, see `pat_lite.models.tinybase`). Anything else
    goes to `from_pretrained`; offline and not cached, the error says how to get it. Remote code runs only
    when `trust_remote_code` is asked for. A local folder is checked first (`check_model_folder`): a missing
    path, a run folder, an adapter or a corrupted `model.safetensors` raise CheckpointError naming it.
    """
    if name_or_path == "tiny":
        from pat_lite.models.tinybase import build_tiny_base

        name_or_path = str(build_tiny_base())
    local = check_model_folder(name_or_path)
    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            name_or_path, dtype=torch_dtype, trust_remote_code=trust_remote_code, use_safetensors=True
        )
    except OSError as error:
        if local is not None:
            raise CheckpointError(f"cannot load the model in {local}: {one_line(error)}") from error
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        raise ModelUnavailableError(
            f"cannot load {name_or_path!r}: it is not a local folder and "
            + ("the hub is offline here (HF_HUB_OFFLINE=1)" if offline else "the hub did not provide it")
            + f". Either download it once on a connected machine (`huggingface-cli download {name_or_path}`, "
            "then set HF_HOME to that cache) or pass the path of a local checkpoint folder; "
            "`model=tiny` uses the embedded offline model."
        ) from error
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return model, tokenizer
