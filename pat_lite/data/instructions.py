"""Instruction-tuning data: the paper's Alpaca template, response-only labels, LaMini loading, the toy set.

docs/method.md §7: the paper tunes on a random 50 % of LaMini-instruction (seed 42), each example rendered as

    {system}\\n\\n### Instruction:\\n{instruction}\\n\\n### Response:\\n{response}</s>

and the instruction loss is cross-entropy on the response tokens only (§5). The prompt is tokenized on
its own and the response ids are appended, so the prompt/response boundary of the labels is exact.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from pat_lite.data.prompts import ALPACA_SYSTEM, format_prompt

__all__ = [
    "ALPACA_SYSTEM",
    "DatasetUnavailableError",
    "LAMINI_HUB_ID",
    "SFTCollator",
    "build_sft_dataset",
    "format_prompt",
    "load_instruction_data",
    "load_lamini",
    "tokenize_example",
]

log = logging.getLogger(__name__)

LAMINI_HUB_ID = "MBZUAI/LaMini-instruction"
REQUIRED_COLUMNS = ("instruction", "response")
IGNORE_INDEX = -100


class DatasetUnavailableError(RuntimeError):
    """The instruction data cannot be loaded here (offline and not cached, or a missing local file)."""


def tokenize_example(tokenizer, instruction: str, response: str, max_length: int) -> dict | None:
    """Token ids, attention mask and response-only labels of one example; None if nothing is supervised.

    ids = tokenize(prompt) [with BOS if the tokenizer adds one] + tokenize(response) + [EOS]. Labels are
    -100 on the prompt and equal to the ids on response + EOS. Truncation keeps the first ``max_length``
    tokens; if the prompt alone fills them, the example has no supervised token and None is returned
    (the dataset builder drops it).
    """
    prompt_ids = list(tokenizer(format_prompt(instruction), add_special_tokens=True)["input_ids"])
    response_ids = list(tokenizer(response, add_special_tokens=False)["input_ids"])
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token; the Alpaca recipe ends every response with it")
    input_ids = (prompt_ids + response_ids + [tokenizer.eos_token_id])[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + response_ids + [tokenizer.eos_token_id])[:max_length]
    if all(label == IGNORE_INDEX for label in labels):
        return None
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


@dataclass
class SFTCollator:
    """Right-pad a list of :func:`tokenize_example` outputs to the longest one; return torch tensors.

    Pads ids with the tokenizer's pad id (fallback: EOS), labels with -100, attention mask with 0.
    """

    tokenizer: object
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id
        width = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        out = {
            "input_ids": torch.full((len(features), width), pad_id, dtype=torch.long),
            "attention_mask": torch.zeros((len(features), width), dtype=torch.long),
            "labels": torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long),
        }
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            out["input_ids"][row, :n] = torch.as_tensor(f["input_ids"])
            out["attention_mask"][row, :n] = torch.as_tensor(f.get("attention_mask", [1] * n))
            out["labels"][row, :n] = torch.as_tensor(f["labels"])
        return out


def _unavailable(what: str, cause: BaseException) -> DatasetUnavailableError:
    return DatasetUnavailableError(
        f"cannot load {what}: {type(cause).__name__}: {cause}\n"
        "Provide the instruction data in one of two ways:\n"
        f"  1. go online once so the hub dataset is cached, e.g.\n"
        f'     HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 python -c "import datasets; '
        f"datasets.load_dataset('{LAMINI_HUB_ID}')\"\n"
        "  2. or pass a local file path (.parquet, .jsonl or .json, or a directory of them) with the columns "
        f"{list(REQUIRED_COLUMNS)}."
    )


def _offline_errors() -> tuple[type[BaseException], ...]:
    """What datasets raises when the hub is unreachable / offline and nothing is cached (checked on 5.2):
    ``ConnectionError`` (wrapping OfflineModeIsEnabled / LocalEntryNotFoundError), DatasetNotFoundError and
    FileNotFoundError (a missing local path)."""
    errors: list[type[BaseException]] = [ConnectionError, FileNotFoundError]
    try:
        from datasets.exceptions import DatasetNotFoundError

        errors.append(DatasetNotFoundError)
    except ImportError:  # pragma: no cover - older datasets
        pass
    try:
        from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

        errors += [LocalEntryNotFoundError, OfflineModeIsEnabled]
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


_LOCAL_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json"}


def _load_local(path: Path, split: str):
    import datasets

    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in _LOCAL_BUILDERS)
        if not files:
            raise FileNotFoundError(f"no .parquet/.jsonl/.json files under {path}")
        builders = {_LOCAL_BUILDERS[p.suffix] for p in files}
        if len(builders) > 1:
            raise ValueError(f"mixed file types under {path}: {sorted(p.suffix for p in files)}")
        builder, data_files = builders.pop(), [str(p) for p in files]
    elif path.is_file():
        if path.suffix not in _LOCAL_BUILDERS:
            raise ValueError(f"unsupported file type {path.suffix!r}; use .parquet, .jsonl or .json")
        builder, data_files = _LOCAL_BUILDERS[path.suffix], [str(path)]
    else:
        raise FileNotFoundError(f"no such file or directory: {path}")
    return datasets.load_dataset(builder, data_files={split: data_files}, split=split)


def load_lamini(
    source: str | Path | None = None, fraction: float = 0.5, seed: int = 42, split: str = "train"
):
    """LaMini-instruction (hub when ``source`` is None, else a local file/dir), reduced to the paper's subset.

    The subset is ``shuffle(seed).select(range(int(fraction * n)))`` — a random 50 % with seed 42 (§7).
    Raises ValueError naming missing columns, and :class:`DatasetUnavailableError` (saying how to provide
    the data) when offline with nothing cached or when the local path does not exist.
    """
    import datasets

    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    try:
        if source is None:
            ds = datasets.load_dataset(LAMINI_HUB_ID, split=split)
        else:
            ds = _load_local(Path(source).expanduser(), split)
    except _offline_errors() as e:
        raise _unavailable(LAMINI_HUB_ID if source is None else str(source), e) from e
    missing = [c for c in REQUIRED_COLUMNS if c not in ds.column_names]
    if missing:
        raise ValueError(f"instruction data lacks column(s) {missing}; found {ds.column_names}")
    n = int(fraction * len(ds))
    return ds.shuffle(seed=seed).select(range(n))


def load_instruction_data(name_or_path: str, **kw):
    """``"toy"`` → the embedded toy instruction set; ``"realtext"`` → the tuning split of the real-text set
    (CPython's reference manual and docstrings, ``pat_lite.data.realtext``); ``"lamini"`` → hub LaMini;
    a path → a local LaMini copy.

    Returns a ``datasets.Dataset`` with (at least) the columns ``instruction`` and ``response``. Keyword
    arguments go to :func:`load_lamini` (ignored for the embedded sets, apart from an optional ``data_dir``).
    """
    import datasets

    if name_or_path == "toy":
        from pat_lite.data.toyworld import load_toy_instructions

        records = load_toy_instructions(kw.get("data_dir"))
        return datasets.Dataset.from_list(records)
    if name_or_path == "realtext":
        from pat_lite.data.realtext import load_realtext_instructions

        return datasets.Dataset.from_list(load_realtext_instructions("tune", kw.get("data_dir")))
    if name_or_path == "lamini":
        return load_lamini(None, **kw)
    return load_lamini(name_or_path, **kw)


def build_sft_dataset(dataset, tokenizer, max_length: int, num_proc: int | None = None):
    """Tokenize ``dataset`` (instruction/response) with :func:`tokenize_example`; drop unsupervised examples.

    The number of dropped examples (the prompt alone fills ``max_length``) is logged as a warning.
    """

    def _encode(batch: dict) -> dict:
        out: dict[str, list] = {"input_ids": [], "attention_mask": [], "labels": [], "keep": []}
        for instruction, response in zip(batch["instruction"], batch["response"], strict=True):
            ex = tokenize_example(tokenizer, instruction, response, max_length)
            out["keep"].append(ex is not None)
            for k in ("input_ids", "attention_mask", "labels"):
                out[k].append(ex[k] if ex is not None else [])
        return out

    encoded = dataset.map(
        _encode, batched=True, remove_columns=dataset.column_names, num_proc=num_proc, desc="tokenizing"
    )
    kept = encoded.filter(lambda keep: keep, input_columns="keep", num_proc=num_proc)
    dropped = len(encoded) - len(kept)
    if dropped:
        log.warning(
            "dropped %d of %d examples whose prompt fills max_length=%d", dropped, len(encoded), max_length
        )
    return kept.remove_columns("keep")
