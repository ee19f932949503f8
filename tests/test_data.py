"""Instruction data: the Alpaca template, response-only labels, padding, LaMini (docs/method.md §5, §7)."""

from __future__ import annotations

import json
import logging

import pytest
import torch

import pat_lite.data.instructions as data
from pat_lite.data import toyworld
from pat_lite.models.tinybase import tokenizer_training_text, train_tokenizer

INSTRUCTION = "Where does Brabam Dagi live?"
RESPONSE = "Brabam Dagi lives in Veldra."


@pytest.fixture(scope="module")
def tokenizer():
    """A small byte-level BPE trained on the toy world's texts (no pre-trained model needed)."""
    return train_tokenizer(tokenizer_training_text(toyworld.build_world()), vocab_size=512)


def test_template_exact():
    assert data.ALPACA_SYSTEM == (
        "Below is an instruction that describes a task. "
        "Write a response that appropriately completes the request."
    )
    assert data.format_prompt("Say hi.") == (
        "Below is an instruction that describes a task. Write a response that appropriately completes "
        "the request.\n\n### Instruction:\nSay hi.\n\n### Response:\n"
    )


def test_labels_mask_prompt_exactly(tokenizer):
    ex = data.tokenize_example(tokenizer, INSTRUCTION, RESPONSE, max_length=256)
    prompt_ids = tokenizer(data.format_prompt(INSTRUCTION))["input_ids"]
    response_ids = tokenizer(RESPONSE, add_special_tokens=False)["input_ids"]
    n = len(prompt_ids)
    assert ex["input_ids"][0] == tokenizer.bos_token_id
    assert ex["input_ids"] == prompt_ids + response_ids + [tokenizer.eos_token_id]
    assert ex["labels"][:n] == [-100] * n
    assert ex["labels"][n:] == ex["input_ids"][n:]
    assert ex["labels"][-1] == tokenizer.eos_token_id  # EOS at the end, supervised
    assert ex["attention_mask"] == [1] * len(ex["input_ids"])
    assert tokenizer.decode(ex["input_ids"][n:-1]) == RESPONSE


def test_truncation_keeps_the_start(tokenizer):
    full = data.tokenize_example(tokenizer, INSTRUCTION, RESPONSE, max_length=256)
    n_prompt = full["labels"].count(-100)
    cut = data.tokenize_example(tokenizer, INSTRUCTION, RESPONSE, max_length=n_prompt + 2)
    assert cut["input_ids"] == full["input_ids"][: n_prompt + 2]
    assert cut["labels"] == full["labels"][: n_prompt + 2]
    assert len(cut["attention_mask"]) == n_prompt + 2


def test_prompt_filling_max_length_is_unsupervised(tokenizer):
    n_prompt = len(tokenizer(data.format_prompt(INSTRUCTION))["input_ids"])
    assert data.tokenize_example(tokenizer, INSTRUCTION, RESPONSE, max_length=n_prompt) is None
    assert data.tokenize_example(tokenizer, INSTRUCTION, RESPONSE, max_length=n_prompt + 1) is not None


def test_build_sft_dataset_drops_unsupervised(tokenizer, caplog):
    import datasets

    long_instruction = " ".join(["word"] * 300)
    ds = datasets.Dataset.from_list(
        [
            {"instruction": INSTRUCTION, "response": RESPONSE},
            {"instruction": long_instruction, "response": "ok"},
            {"instruction": "Say hi.", "response": "hi"},
        ]
    )
    with caplog.at_level(logging.WARNING, logger="pat_lite.data.instructions"):
        out = data.build_sft_dataset(ds, tokenizer, max_length=64)
    assert len(out) == 2
    assert set(out.column_names) == {"input_ids", "attention_mask", "labels"}
    assert "dropped 1 of 3" in caplog.text
    assert out[0] == data.tokenize_example(tokenizer, INSTRUCTION, RESPONSE, 64)


def test_collator_pads_right(tokenizer):
    a = data.tokenize_example(tokenizer, INSTRUCTION, RESPONSE, 256)
    b = data.tokenize_example(tokenizer, "Say hi.", "hi", 256)
    batch = data.SFTCollator(tokenizer)([a, b])
    width = max(len(a["input_ids"]), len(b["input_ids"]))
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (2, width)
    assert all(t.dtype == torch.long for t in batch.values())
    lengths = [len(a["input_ids"]), len(b["input_ids"])]
    short, n = lengths.index(min(lengths)), min(lengths)
    assert (batch["input_ids"][short, n:] == tokenizer.pad_token_id).all()
    assert (batch["labels"][short, n:] == -100).all()
    assert (batch["attention_mask"][short, n:] == 0).all()
    assert batch["attention_mask"][short, :n].all()
    padded = data.SFTCollator(tokenizer, pad_to_multiple_of=16)([a, b])
    assert padded["input_ids"].shape[1] % 16 == 0 and padded["input_ids"].shape[1] >= width


def test_collator_falls_back_to_eos():
    class Tok:
        pad_token_id = None
        eos_token_id = 7

    batch = data.SFTCollator(Tok())(
        [
            {"input_ids": [1, 2, 3], "attention_mask": [1, 1, 1], "labels": [-100, 2, 3]},
            {"input_ids": [1], "labels": [1]},
        ]
    )
    assert batch["input_ids"].tolist() == [[1, 2, 3], [1, 7, 7]]
    assert batch["labels"].tolist() == [[-100, 2, 3], [1, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def _rows(n: int) -> list[dict]:
    return [{"instruction": f"question {i}", "response": f"answer {i}"} for i in range(n)]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_load_lamini_local_jsonl_subset_is_deterministic(tmp_path):
    path = _write_jsonl(tmp_path / "lamini.jsonl", _rows(40))
    a = data.load_lamini(str(path))
    b = data.load_lamini(path, fraction=0.5, seed=42)
    assert len(a) == 20
    assert a["instruction"] == b["instruction"]
    assert a["instruction"] != [f"question {i}" for i in range(20)]  # a random subset, not the head
    c = data.load_lamini(path, seed=0)
    assert c["instruction"] != a["instruction"]
    assert len(data.load_lamini(path, fraction=1.0)) == 40


def test_load_lamini_local_parquet_and_directory(tmp_path):
    import datasets

    datasets.Dataset.from_list(_rows(30)).to_parquet(str(tmp_path / "part.parquet"))
    from_file = data.load_lamini(tmp_path / "part.parquet")
    from_dir = data.load_lamini(tmp_path)
    assert len(from_file) == 15
    assert from_file["instruction"] == from_dir["instruction"]


def test_load_lamini_missing_columns(tmp_path):
    path = _write_jsonl(tmp_path / "bad.jsonl", [{"instruction": "x", "output": "y"}])
    with pytest.raises(ValueError, match="response"):
        data.load_lamini(path)


def test_load_lamini_missing_local_path(tmp_path):
    with pytest.raises(data.DatasetUnavailableError, match="local file"):
        data.load_lamini(tmp_path / "nope.jsonl")


def test_load_lamini_offline_hub_explains_both_ways(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache, whatever this machine has
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf" / "datasets", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(
        huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"), raising=False
    )
    with pytest.raises(data.DatasetUnavailableError) as err:
        data.load_instruction_data("lamini")
    msg = str(err.value)
    assert "HF_HUB_OFFLINE=0" in msg and "load_dataset('MBZUAI/LaMini-instruction')" in msg
    assert "local file path" in msg and "instruction" in msg and "response" in msg


def test_toy_instruction_loader():
    ds = data.load_instruction_data("toy")
    assert set(ds.column_names) == {"instruction", "response"}
    assert ds.to_list() == toyworld.load_toy_instructions()


def test_load_instruction_data_path(tmp_path):
    path = _write_jsonl(tmp_path / "x.jsonl", _rows(10))
    assert len(data.load_instruction_data(str(path), fraction=1.0)) == 10


def test_toy_instructions_tokenize_without_unknowns(tokenizer):
    for rec in toyworld.load_toy_instructions()[:50]:
        ex = data.tokenize_example(tokenizer, rec["instruction"], rec["response"], 256)
        assert tokenizer.unk_token_id not in ex["input_ids"]
        assert ex["labels"][-1] == tokenizer.eos_token_id
