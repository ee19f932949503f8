"""Instruction-tuning data: the paper's Alpaca template, response-only labels, LaMini loading, the toy set.

docs/method.md §7: the paper tunes on a random 50 % of LaMini-instruction (seed 42), each example rendered as

    {system}\\n\\n### Instruction:\\n{instruction}\\n\\n### Response:\\n{response}</s>

and the instruction loss is cross-entropy on the response tokens only (§5). The prompt is tokenized on
its own and the response ids are appended, so the prompt/response boundary of the labels is exact.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from pat_lite.data.prompts import ALPACA_SYSTEM, format_prompt
from pat_lite.utils.errors import DataError, PatLiteError, one_line

__all__ = [
    "ALPACA_SYSTEM",
    "DatasetUnavailableError",
    "LAMINI_HUB_ID",
    "LAMINI_ROWS",
    "SFTCollator",
    "build_sft_dataset",
    "check_instruction_records",
    "format_prompt",
    "load_instruction_data",
    "load_lamini",
    "records_fingerprint",
    "tokenize_example",
]

log = logging.getLogger(__name__)

LAMINI_HUB_ID = "MBZUAI/LaMini-instruction"
#: Rows of LaMini-instruction's train split (its dataset card: 2.58 M); the paper tunes on a random half.
LAMINI_ROWS = 2_585_615
REQUIRED_COLUMNS = ("instruction", "response")
IGNORE_INDEX = -100


class DatasetUnavailableError(PatLiteError, RuntimeError):
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
    first_line = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return DatasetUnavailableError(
        f"cannot load {what} ({type(cause).__name__}: {first_line}); either cache it once on a connected "
        f'machine: HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 python -c "import datasets; '
        f"datasets.load_dataset('{LAMINI_HUB_ID}')\", or pass a local file path (.parquet, .jsonl or .json, "
        f"or a folder of them) with the columns {list(REQUIRED_COLUMNS)}"
    )


def _offline_errors() -> tuple[type[BaseException], ...]:
    """What datasets raises when the hub is unreachable / offline and nothing is cached (checked on 5.2):
    ``ConnectionError`` (wrapping OfflineModeIsEnabled / LocalEntryNotFoundError), DatasetNotFoundError and
    FileNotFoundError."""
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
_FORMATS = ".parquet, .jsonl or .json, or a folder of them"


def _local_files(path: Path) -> tuple[str, list[Path]]:
    """The datasets builder and the files of a local source (a file, or a folder searched recursively)."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in _LOCAL_BUILDERS and p.is_file())
        if not files:
            raise DataError(f"{path}: no instruction data files in this folder ({_FORMATS})")
        builders = {_LOCAL_BUILDERS[p.suffix] for p in files}
        if len(builders) > 1:
            raise DataError(f"{path}: mixed file types {sorted({p.suffix for p in files})}; use one")
        return builders.pop(), files
    if path.is_file():
        if path.suffix not in _LOCAL_BUILDERS:
            raise DataError(f"{path}: unsupported file type {path.suffix!r}; use {_FORMATS}")
        return _LOCAL_BUILDERS[path.suffix], [path]
    raise DatasetUnavailableError(
        f"no instruction data at {path}: no such file or folder; data= takes toy, lamini (the hub) or a "
        f"local file path ({_FORMATS})"
    )


def _record_problem(record: object) -> str | None:
    """What makes one record unusable, or None."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, expected an object with {list(REQUIRED_COLUMNS)}"
    for column in REQUIRED_COLUMNS:
        value = record.get(column)
        if value is None:
            return f"no {column!r} (every record needs string {list(REQUIRED_COLUMNS)})"
        if not isinstance(value, str):
            return f"{column!r} is {type(value).__name__} {value!r:.40}, expected a string"
    return None


def _is_utf8(file: Path, chunk: int = 1 << 20) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    with open(file, "rb") as handle:
        try:
            while block := handle.read(chunk):
                decoder.decode(block)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    return True


def _json_problem(file: Path) -> str | None:
    """The first unreadable or unusable record of a JSON-lines file or a JSON array, as "line N: ...";
    None if every record is fine. Reads line by line (a LaMini copy is large)."""
    with open(file, "rb") as handle:
        head = handle.read(4096).lstrip()
        handle.seek(0)
        if head.startswith(b"["):  # one JSON array of records
            return _json_array_problem(handle.read())
        found = False
        for number, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                return f"line {number}: not UTF-8 text (byte 0x{raw[err.start]:02x}); save the file as UTF-8"
            if not line.strip():
                continue
            found = True
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                return f"line {number}: not valid JSON ({err.msg})"
            if problem := _record_problem(record):
                return f"line {number}: {problem}"
    return None if found else "the file holds no records"


def _json_array_problem(raw: bytes) -> str | None:
    try:
        records = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        return f"line {line}: not UTF-8 text (byte 0x{raw[err.start]:02x}); save the file as UTF-8"
    except json.JSONDecodeError as err:
        return f"line {err.lineno}: not valid JSON ({err.msg})"
    for index, record in enumerate(records, 1):
        if problem := _record_problem(record):
            return f"record {index}: {problem}"
    return None if records else "the file holds no records"


def _diagnose(builder: str, files: list[Path], cause: BaseException | str) -> DataError:
    """A DataError naming the file (and record) that `datasets` could not read or that `cause` is about."""
    for file in files:
        if builder == "json":
            problem = _json_problem(file)
        else:
            import pyarrow.parquet

            try:
                pyarrow.parquet.read_schema(file)
                problem = None
            except Exception as err:  # pyarrow raises several types for a file that is not parquet
                problem = f"not a readable parquet file ({one_line(err)})"
        if problem:
            return DataError(f"{file}: {problem}")
    where = files[0] if len(files) == 1 else f"{files[0].parent} ({len(files)} files)"
    return DataError(f"{where}: {one_line(cause)}")


def check_instruction_records(ds, where: str, builder: str | None = None, files: list[Path] = ()) -> None:
    """Raise DataError unless every record of `ds` has string `instruction` and `response` values.

    Cheap on the Arrow table (column types, null counts); when something is wrong and the source files are
    known, they are read again to name the record."""
    if len(ds) == 0:
        raise DataError(f"{where}: the instruction data holds no records")
    missing = [c for c in REQUIRED_COLUMNS if c not in ds.column_names]
    if missing:
        if builder == "json" and files:  # name the first record without them
            raise _diagnose(builder, list(files), f"instruction data lacks column(s) {missing}")
        raise DataError(
            f"{where}: instruction data lacks column(s) {missing}; found {ds.column_names} (every record "
            f"needs string {list(REQUIRED_COLUMNS)})"
        )
    for column in REQUIRED_COLUMNS:
        feature = ds.features[column]
        is_text = getattr(feature, "dtype", None) in ("string", "large_string")
        nulls = ds.data.column(column).null_count if is_text else 0
        if is_text and not nulls:
            continue
        problem = f"column {column!r} holds {getattr(feature, 'dtype', feature)} values, expected strings"
        if nulls:
            first = next(i for i, value in enumerate(ds[column]) if value is None)
            problem = f"record {first + 1}: no {column!r} (every record needs {list(REQUIRED_COLUMNS)})"
        if files and builder:
            raise _diagnose(builder, files, problem)
        raise DataError(f"{where}: {problem}")


def _load_local(path: Path, split: str):
    import datasets

    builder, files = _local_files(path)
    for file in files:
        if file.stat().st_size == 0:
            raise DataError(
                f"{file}: the file is empty; instruction data needs {list(REQUIRED_COLUMNS)} records"
            )
        if builder == "json" and not _is_utf8(file):  # Arrow's JSON reader lets some bad bytes through
            raise _diagnose(builder, [file], "not UTF-8 text")
    try:
        ds = datasets.load_dataset(builder, data_files={split: [str(f) for f in files]}, split=split)
    except Exception as err:  # datasets wraps parse errors in several types: find the file and record
        raise _diagnose(builder, files, err) from err
    check_instruction_records(ds, str(path), builder, files)
    return ds


def load_lamini(
    source: str | Path | None = None, fraction: float = 0.5, seed: int = 42, split: str = "train"
):
    """LaMini-instruction (hub when ``source`` is None, else a local file/dir), reduced to the paper's subset.

    The subset is ``shuffle(seed).select(range(int(fraction * n)))`` — a random 50 % with seed 42 (§7).
    Raises :class:`DataError` naming the file and record that is unusable (missing or non-string columns,
    not JSON, not UTF-8, empty, or a fraction that leaves nothing), and :class:`DatasetUnavailableError`
    (saying how to provide the data) when offline with nothing cached or when the local path does not exist.
    """
    import datasets

    if not 0 < fraction <= 1:
        raise DataError(f"fraction must be in (0, 1], got {fraction}")
    if source is None:
        try:
            ds = datasets.load_dataset(LAMINI_HUB_ID, split=split)
        except _offline_errors() as e:
            raise _unavailable(LAMINI_HUB_ID, e) from e
        where = LAMINI_HUB_ID
        check_instruction_records(ds, where)
    else:
        where = str(Path(source).expanduser())
        ds = _load_local(Path(where), split)
    n = int(fraction * len(ds))
    if n == 0:
        raise DataError(
            f"{where}: data_fraction={fraction} of its {len(ds)} records leaves 0 examples; "
            f"use data_fraction ≥ {1 / len(ds):.3g}"
        )
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


def records_fingerprint(dataset, batch_size: int = 10_000) -> str:
    """A short hex digest of the instruction/response records of `dataset`, in order: what a run was
    tuned on (its run folder records it, so that a resume on changed data is refused). Content only: a
    file that was touched but not changed keeps its fingerprint."""
    digest = hashlib.sha256()
    for batch in dataset.select_columns(list(REQUIRED_COLUMNS)).iter(batch_size=batch_size):
        digest.update(json.dumps([batch[column] for column in REQUIRED_COLUMNS]).encode())
    return digest.hexdigest()[:16]


#: Calibration text for the residual-stream statistics (the PCA baseline, PAT's informed starts): the first
#: records of the tuning data in the training template, cut to this many tokens.
CALIBRATION_SAMPLES = 64
CALIBRATION_LENGTH = 128


def calibration_batches(
    records,
    tokenizer,
    samples: int = CALIBRATION_SAMPLES,
    max_length: int = CALIBRATION_LENGTH,
    batch_size: int = 8,
) -> list[dict]:
    """The first `samples` instruction records, prompt + response as in training, as padded token batches
    (`input_ids`, `attention_mask`): deterministic, so every method that measures the residual stream of
    one base on one data set sees the same text."""
    rows = [records[i] for i in range(min(samples, len(records)))]
    texts = [format_prompt(r["instruction"]) + r["response"] for r in rows]
    batches = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(
            texts[start : start + batch_size], return_tensors="pt", padding=True, truncation=True,
            max_length=max_length,
        )  # fmt: skip
        batches.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    return batches


def build_sft_dataset(dataset, tokenizer, max_length: int, num_proc: int | None = None, source: str = ""):
    """Tokenize ``dataset`` (instruction/response) with :func:`tokenize_example`; drop unsupervised examples.

    The number of dropped examples (the prompt alone fills ``max_length``) is logged as a warning; if none
    is left, DataError names ``source`` (the data's name or path) and says to raise max_length.
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
    if dropped and not len(kept):
        raise DataError(
            f"{source or 'instruction data'}: max_length={max_length} leaves 0 of its {len(encoded)} "
            "examples (every prompt alone fills it, so no response token is trained on); raise max_length"
        )
    if dropped:
        log.warning(
            "dropped %d of %d examples whose prompt fills max_length=%d", dropped, len(encoded), max_length
        )
    return kept.remove_columns("keep")
