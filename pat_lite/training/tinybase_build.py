"""How the embedded tiny base was made, and how to make another: tokenizer, pre-training, gates, save.

    pat-lite build-tiny-base --out DIR [KEY=VALUE ...]     # e.g. epochs=6 (a TinyBaseRecipe field)

pat_lite ships the result (`data/tiny_base/`, `pat_lite.models.tinybase`); nothing on a user's path calls
this. It stays as a teaching tool — what a base model must know before a cut can cost it anything — and
for rebuilding the shipped base after a change of recipe (`--out data/tiny_base --force`).

1. a byte-level BPE tokenizer trained on the toy corpus plus the Alpaca template text;
2. a ``LlamaForCausalLM`` (RMSNorm, SwiGLU, RoPE, GQA, untied lm_head, 1.2 M parameters) pre-trained on
   :func:`pat_lite.data.toyworld.pretraining_corpus` with a plain torch loop (AdamW, warm-up + cosine),
   about 3-6 CPU-minutes on one thread;
3. the quality gates of `pat_lite.evaluation.gates`, recorded in ``build_report.json`` with every figure.

The output folder is written atomically (a temporary sibling, then renamed; the report last). A build that
misses a gate keeps its folder for inspection (``"gates_passed": false`` and the failed gates in the
report) and raises a one-line :class:`~pat_lite.evaluation.gates.GateError`.

Deterministic for a given recipe *on one machine*: seeded torch and a private ``random.Random``. Another CPU
or other library versions give other numbers (measured: the same recipe gave `month` 92-94 % here and
67.5-69 % on another machine) — which is why the base ships instead of being built on first use.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import asdict, fields
from pathlib import Path

import torch

from pat_lite.data import toyworld
from pat_lite.evaluation.gates import GateError, check_gates, gate_report
from pat_lite.models.tinybase import (
    REPORT_NAME,
    TINYBASE_VERSION,
    TinyBaseRecipe,
    make_model,
    tokenizer_training_text,
    train_tokenizer,
)
from pat_lite.utils.atomic import atomic_directory
from pat_lite.utils.environment import environment
from pat_lite.utils.errors import ConfigError, RunFolderError
from pat_lite.utils.locks import hold_folder
from pat_lite.utils.output import output_location

__all__ = ["build_tiny_base", "pretrain", "recipe_from_overrides"]

#: Torch threads for the build. One, on purpose: the model is so small that a step is dominated by
#: per-op overhead, and on a shared 2-core machine two threads were measured ~9x *slower* (0.47 vs
#: 4.2 steps/s) because OpenMP workers wait on each other. Pass ``num_threads`` to override.
DEFAULT_THREADS = 1
_BUCKET_BATCHES = 16


def recipe_from_overrides(overrides: list[str]) -> TinyBaseRecipe:
    """A `TinyBaseRecipe` with `KEY=VALUE` fields changed, each converted to the field's declared type."""
    known = {f.name: f for f in fields(TinyBaseRecipe)}
    values = {}
    for text in overrides:
        key, sep, raw = text.partition("=")
        if not sep or key not in known:
            raise ConfigError(
                f"{text!r}: expected KEY=VALUE with KEY one of the tiny base recipe's fields "
                f"({', '.join(known)})"
            )
        kind = {"int": int, "float": float}[str(known[key].type)]
        try:
            values[key] = kind(raw)
        except ValueError:
            raise ConfigError(f"{key}={raw!r}: expected {kind.__name__}") from None
    return TinyBaseRecipe(**values)


def _batches(docs: list[tuple[list[int], list[int]]], batch_size: int, pad_id: int, rng: random.Random):
    """Shuffled, length-bucketed, right-padded batches ``(input_ids, attention_mask, labels)`` of
    ``(ids, labels)`` documents.

    Documents are shuffled, then sorted by length inside windows of 16 batches, so a batch rarely mixes a
    one-sentence document with a long biography (padding would otherwise waste most of the compute).
    """
    order = list(range(len(docs)))
    rng.shuffle(order)
    window = batch_size * _BUCKET_BATCHES
    batches = []
    for w in range(0, len(order), window):
        part = sorted(order[w : w + window], key=lambda i: len(docs[i][0]))
        batches += [part[b : b + batch_size] for b in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    for batch in batches:
        rows = [docs[i] for i in batch]
        width = max(len(ids) for ids, _ in rows)
        x = torch.full((len(rows), width), pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for row, (ids, doc_labels) in enumerate(rows):
            x[row, : len(ids)] = torch.tensor(ids)
            labels[row, : len(ids)] = torch.tensor(doc_labels)
            mask[row, : len(ids)] = 1
        yield x, mask, labels


def _encode_documents(
    tokenizer, documents: list[toyworld.Document], max_len: int
) -> list[tuple[list[int], list[int]]]:
    """``(ids, labels)`` per document: BOS + text + EOS; labels = ids on the trained spans (all of a fact
    document, EOS included; only the answers of a skill document), -100 elsewhere."""
    enc = tokenizer(
        [text for text, _ in documents],
        add_special_tokens=True,
        truncation=True,
        max_length=max_len - 1,
        return_offsets_mapping=True,
    )
    out = []
    for ids, offsets, (_, spans) in zip(enc["input_ids"], enc["offset_mapping"], documents, strict=True):
        ids = ids + [tokenizer.eos_token_id]
        if spans is None:
            labels = list(ids)
        else:  # a token is trained if its characters overlap an answer span (BOS and EOS are not)
            labels = [
                tok if any(start < b and end > a for a, b in spans) and end > start else -100
                for tok, (start, end) in zip(ids, offsets + [(0, 0)], strict=True)
            ]
        out.append((ids, labels))
    return out


def pretrain(model, tokenizer, world: toyworld.World, recipe: TinyBaseRecipe, progress: bool = True) -> dict:
    """Pre-train ``model`` on the toy corpus: one document per sequence (BOS + text + EOS), AdamW, cosine.

    Returns a summary (steps, final loss, seconds).
    """
    from tqdm.auto import tqdm

    torch.manual_seed(recipe.seed)
    rng = random.Random(recipe.seed)
    documents = toyworld.pretraining_documents(
        world, epochs=recipe.epochs, seed=recipe.seed, skill_docs_per_family=recipe.skill_docs_per_family
    )
    encoded = _encode_documents(tokenizer, documents, recipe.max_seq_len)
    pad_id = tokenizer.pad_token_id
    n_epochs = recipe.epochs
    chunk = math.ceil(len(encoded) / n_epochs)  # each epoch its own slice (other biographies per epoch)
    sizes = [len(encoded[e * chunk : (e + 1) * chunk]) for e in range(n_epochs)]
    window = recipe.batch_size * _BUCKET_BATCHES
    total = sum(math.ceil(min(window, n - w) / recipe.batch_size) for n in sizes for w in range(0, n, window))
    opt = torch.optim.AdamW(
        model.parameters(), lr=recipe.lr, betas=(0.9, 0.98), weight_decay=recipe.weight_decay
    )

    def lr_at(step: int) -> float:
        if step < recipe.warmup_steps:
            return (step + 1) / recipe.warmup_steps
        t = min(1.0, (step - recipe.warmup_steps) / max(1, total - recipe.warmup_steps))
        return recipe.min_lr_ratio + (1 - recipe.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    start, step, loss_ema = time.time(), 0, None
    bar = tqdm(total=total, desc="pre-training tiny base", disable=not progress)
    for e in range(n_epochs):
        for x, mask, labels in _batches(encoded[e * chunk : (e + 1) * chunk], recipe.batch_size, pad_id, rng):
            loss = model(input_ids=x, attention_mask=mask, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.max_grad_norm)
            opt.step()
            sched.step()
            step += 1
            loss_ema = loss.item() if loss_ema is None else 0.95 * loss_ema + 0.05 * loss.item()
            bar.update(1)
            bar.set_postfix(loss=f"{loss_ema:.3f}")
    bar.close()
    model.eval()
    return {"steps": step, "final_loss_ema": loss_ema, "seconds": round(time.time() - start, 1)}


def _check_output(out: Path, force: bool) -> Path:
    """Refuse, before any work, a location that cannot be a folder or cannot be written
    (`output_location`), or a non-empty folder (unless `force`); return the folder to write."""
    folder = output_location(out, "--out")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise RunFolderError(f"{out} is not empty: pick a new folder, or pass --force to replace it")
    return folder


def build_tiny_base(
    out: str | os.PathLike,
    recipe: TinyBaseRecipe | None = None,
    force: bool = False,
    progress: bool = True,
    num_threads: int | None = None,
) -> Path:
    """Build a tiny base into `out` (tokenizer, pre-training, gates, save); return the folder.

    The folder is written whatever the gates say, atomically, with ``build_report.json`` last; a missed
    gate then raises GateError (one line) after the folder is in place. ``num_threads`` (default
    :data:`DEFAULT_THREADS`) is set for the build and restored afterwards.
    """
    recipe = recipe or TinyBaseRecipe()
    asked = recipe.hidden_size * (1 - recipe.cut_ratio)
    if not math.isclose(recipe.cut_hidden_size, asked):
        raise ConfigError(
            f"hidden {recipe.hidden_size} cut by {recipe.cut_ratio:.0%} keeps {asked:g} channels, not a "
            f"multiple of {recipe.num_attention_heads} heads (the nearest valid width is "
            f"{recipe.cut_hidden_size}): choose a cut_ratio that lands on one"
        )
    out = Path(out)
    folder = _check_output(out, force)
    with hold_folder(folder, "--out"):  # a second build into the same folder is refused
        _build(folder, recipe, progress, num_threads)
    return out


def _build(folder: Path, recipe: TinyBaseRecipe, progress: bool, num_threads: int | None) -> None:
    """`build_tiny_base` with `folder` checked and held: pre-train, gate, write."""
    t0, cpu0 = time.time(), time.process_time()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(num_threads or DEFAULT_THREADS)
    try:
        world = toyworld.build_world(recipe.world_seed, recipe.n_people)
        tokenizer = train_tokenizer(tokenizer_training_text(world), recipe.vocab_size)
        model = make_model(recipe, tokenizer)
        train_summary = pretrain(model, tokenizer, world, recipe, progress=progress)
        report = gate_report(model, tokenizer, world, recipe.cut_ratio)
        threads_used = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous_threads)
    failed = check_gates(report, recipe)
    report.update(
        recipe=asdict(recipe),
        key=recipe.key(),
        toyworld_version=toyworld.TOYWORLD_VERSION,
        tinybase_version=TINYBASE_VERSION,
        n_parameters=sum(p.numel() for p in model.parameters()),
        vocab_size=len(tokenizer),
        train=train_summary,
        build_seconds=round(time.time() - t0, 1),
        build_cpu_seconds=round(time.process_time() - cpu0, 1),
        torch_threads=threads_used,
        gates_passed=not failed,
        failed_gates=failed,
        environment=environment(),
    )

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / REPORT_NAME).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")

    atomic_directory(folder, write)
    if failed:
        raise GateError(
            f"the tiny base built in {folder} missed {len(failed)} quality gate(s): {'; '.join(failed)} "
            f"(its files and {REPORT_NAME} are kept there for inspection; the shipped base is unchanged)"
        )
