"""A tiny Llama-architecture base model pre-trained on the toy world by our own code, built once and cached.

Why: PAT (docs/method.md) needs a base model that knows something a hidden-size cut can take away. This
module trains one (1.2 M parameters) in about 5.5 CPU-minutes on one thread, with no download:

1. a byte-level BPE tokenizer (``tokenizers``) trained on the toy corpus plus the Alpaca template text,
   wrapped as ``transformers.PreTrainedTokenizerFast`` (``<s>`` BOS added to every sequence, ``</s>``,
   ``<pad>``, ``<unk>``);
2. a ``LlamaForCausalLM`` (RMSNorm, SwiGLU, RoPE, GQA, untied lm_head) pre-trained on
   :func:`pat_lite.data.toyworld.pretraining_corpus` with a plain torch loop (AdamW, warm-up + cosine);
3. quality gates, recorded in ``build_report.json`` (docs/method.md §10), on both evaluation splits: the
   dense model reaches ``min_retention`` (90 %) on held-out facts, ``min_skill`` (85 %) on fresh skill
   items and ``min_family`` (75 %) on every family, and a crude 25 % hidden-channel cut *without tuning*
   loses at least ``min_cut_drop`` (15) points on each axis — otherwise pruning-aware tuning would have
   nothing to keep or recover. A failed gate raises :class:`GateError`.

The result is cached under ``$PAT_LITE_CACHE`` (default ``~/.cache/pat_lite``) in a folder whose name holds
a hash of the recipe and the toy-world version; it is loaded with plain ``AutoModelForCausalLM`` /
``AutoTokenizer``. A build writes into a temporary sibling folder and ``os.replace``-s it into place;
``build_report.json`` is written last, so a folder without it is never taken for a finished build.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from pat_lite.core.slicing import norm_channels, zero_hidden_channels
from pat_lite.data import toyskills, toyworld
from pat_lite.evaluation.mc import chance_accuracy, toy_scores
from pat_lite.utils.atomic import atomic_directory
from pat_lite.utils.cache import cache_root

__all__ = [
    "GateError",
    "TinyBaseRecipe",
    "build_tiny_base",
    "crude_hidden_cut",
    "load_tiny_base",
    "make_model",
    "norm_cut_channels",
    "pretrain",
    "tiny_base_dir",
    "tokenizer_training_text",
    "train_tokenizer",
]

#: Bump when the build code changes what it produces (part of the cache key).
TINYBASE_VERSION = "1"
REPORT_NAME = "build_report.json"
#: Torch threads for the build. One, on purpose: the model is so small that a step is dominated by
#: per-op overhead, and on a shared 2-core machine two threads were measured ~9x *slower* (0.47 vs
#: 4.2 steps/s) because OpenMP workers wait on each other. Pass ``num_threads`` to override.
DEFAULT_THREADS = 1
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>")


class GateError(RuntimeError):
    """The built model failed a quality gate (see the message for the measured numbers)."""


@dataclass(frozen=True)
class TinyBaseRecipe:
    """Every knob of the tiny base build. Changing any field changes the cache folder (a rebuild).

    ``hidden_size * (1 - cut_ratio)`` must stay a multiple of ``num_attention_heads``: transformers refuses
    a Llama config otherwise, and PAT's merged model sets hidden_size = d' (docs/method.md §8).
    """

    # toy world
    world_seed: int = toyworld.DEFAULT_SEED
    n_people: int = toyworld.DEFAULT_N_PEOPLE
    skill_docs_per_family: int = toyworld.DEFAULT_SKILL_DOCS
    # tokenizer
    vocab_size: int = 768
    # model (LlamaConfig)
    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 32
    intermediate_size: int = 512
    max_position_embeddings: int = 256
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    # pre-training
    seed: int = 0
    epochs: int = 12
    batch_size: int = 64
    max_seq_len: int = 128
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    # quality gates (docs/method.md §10), in percent / percentage points, checked on both evaluation splits
    cut_ratio: float = 0.25
    min_retention: float = 90.0
    min_skill: float = 85.0
    min_family: float = 75.0
    min_cut_drop: float = 15.0

    def key(self) -> str:
        """Short hash of the recipe + toy-world + build-code versions (the cache folder suffix)."""
        blob = json.dumps(
            {"recipe": asdict(self), "toyworld": toyworld.TOYWORLD_VERSION, "tinybase": TINYBASE_VERSION},
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    @property
    def cut_hidden_size(self) -> int:
        """The hidden size left after the gate's cut (must be a multiple of the head count)."""
        return self.hidden_size - round(self.hidden_size * self.cut_ratio)


# ----------------------------------------------------------------------------------------------- tokenizer
def tokenizer_training_text(world: toyworld.World) -> list[str]:
    """Texts the tokenizer is trained on: a corpus epoch of facts, the instruction texts, the templates.

    The template words, number words, week days, the letters A-D, digits and newlines must be tokens, or
    prompts would become long byte soups. The skill documents are left out: their invented names would
    take BPE merges from the people's names (measured: names 5.8 instead of ~5 tokens, and the facts got
    harder to learn), and the evaluation items are left out too.
    """
    from pat_lite.data.instructions import format_prompt

    texts = list(toyworld.pretraining_corpus(world, epochs=1, skill_docs_per_family=0))
    for rec in toyworld.instruction_records(world):
        texts.append(format_prompt(rec["instruction"]) + rec["response"])
    texts.append(toyskills.SKILL_TEMPLATE_TEXT)
    texts.append("A. B. C. D. A B C D 0 1 2 3 4 5 6 7 8 9 10 100\n\n### Input:\n")
    return texts


def train_tokenizer(texts: list[str], vocab_size: int = 768):
    """Train a byte-level BPE on ``texts`` and wrap it as a ``PreTrainedTokenizerFast`` that adds BOS.

    Byte-level means any text (digits, newlines, unseen words) round-trips exactly; ``<unk>`` exists but is
    never needed.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    bos_id = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        padding_side="right",
        model_max_length=256,
    )


# ------------------------------------------------------------------------------------------------- model
def make_model(recipe: TinyBaseRecipe, tokenizer):
    """A freshly initialised ``LlamaForCausalLM`` of the recipe's shape (untied lm_head, GQA)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.num_hidden_layers,
        num_attention_heads=recipe.num_attention_heads,
        num_key_value_heads=recipe.num_key_value_heads,
        head_dim=recipe.head_dim,
        hidden_act="silu",
        max_position_embeddings=recipe.max_position_embeddings,
        rms_norm_eps=recipe.rms_norm_eps,
        rope_theta=recipe.rope_theta,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(recipe.seed)
    return LlamaForCausalLM(config)


_BUCKET_BATCHES = 16


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

    Deterministic for a given recipe (seeded torch and a private ``random.Random``). Returns a summary
    (steps, final loss, seconds).
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
    chunk = math.ceil(
        len(encoded) / n_epochs
    )  # each epoch is its own slice (different biographies per epoch)
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


# ------------------------------------------------------------------------------------------------- gates
def norm_cut_channels(model, ratio: float = 0.25) -> list[int]:
    """The ``ratio`` hidden channels with the smallest writer-weight L2 norm (sorted indices): the
    complement of `pat_lite.core.slicing.norm_channels` (embedding column i, o_proj and down_proj row i)."""
    width = int(model.config.hidden_size)
    keep = set(norm_channels(model, width - round(width * ratio)).tolist())
    return [channel for channel in range(width) if channel not in keep]


def crude_hidden_cut(model, ratio: float = 0.25) -> list[int]:
    """Zero the :func:`norm_cut_channels` of ``model`` in place and return them.

    Zeroing every writer of channel i makes it zero everywhere (docs/method.md §2) — pruning without any
    tuning, the baseline that tuning has to beat. Call it on a copy.
    """
    cut = norm_cut_channels(model, ratio)
    zero_hidden_channels(model, cut)
    return cut


def gate_report(model, tokenizer, world: toyworld.World, recipe: TinyBaseRecipe) -> dict:
    """Both axes of the base and of its untuned ``cut_ratio`` norm cut, on both evaluation splits."""
    import copy

    items = {split: _eval_items(world, split) for split in toyworld.EVAL_SPLITS}
    pruned = copy.deepcopy(model)
    cut = crude_hidden_cut(pruned, recipe.cut_ratio)
    return {
        "chance": 100.0 * chance_accuracy(items["test"]),
        "base": {split: toy_scores(model, tokenizer, items=its) for split, its in items.items()},
        "cut": {split: toy_scores(pruned, tokenizer, items=its) for split, its in items.items()},
        "cut_ratio": recipe.cut_ratio,
        "cut_channels": cut,
    }


def _eval_items(world: toyworld.World, split: str) -> list[dict]:
    return [it for items in toyworld.eval_items(world, split).values() for it in items]


def check_gates(report: dict, recipe: TinyBaseRecipe) -> list[str]:
    """The list of failed gates (empty = all pass), each with its measured number, on every split:
    the base reaches ``min_retention`` / ``min_skill`` and ``min_family`` on every family, and the untuned
    cut loses at least ``min_cut_drop`` points on each axis."""
    failed = []
    for split, base in report["base"].items():
        cut = report["cut"][split]
        for axis, floor in (("retention", recipe.min_retention), ("skill", recipe.min_skill)):
            if base[axis] < floor:
                failed.append(f"{split}: base {axis} {base[axis]:.1f} % < {floor} %")
            drop = base[axis] - cut[axis]
            if drop < recipe.min_cut_drop:
                failed.append(
                    f"{split}: a {recipe.cut_ratio:.0%} norm cut only drops {axis} by {drop:.1f} points "
                    f"({base[axis]:.1f} -> {cut[axis]:.1f} %) < {recipe.min_cut_drop}"
                )
        for fam, acc in base["per_family"].items():
            if acc < recipe.min_family:
                failed.append(f"{split}: base accuracy on {fam} = {acc:.1f} % < {recipe.min_family} %")
    return failed


# ------------------------------------------------------------------------------------------------- cache
def tiny_base_dir(cache_dir: str | os.PathLike | None = None, recipe: TinyBaseRecipe | None = None) -> Path:
    """Where the tiny base of ``recipe`` lives (whether or not it is built yet)."""
    recipe = recipe or TinyBaseRecipe()
    return cache_root(cache_dir) / f"tiny_base-{recipe.key()}"


def is_built(path: str | os.PathLike) -> bool:
    """A finished build has its ``build_report.json`` (written last)."""
    return (Path(path) / REPORT_NAME).is_file()


def build_tiny_base(
    cache_dir: str | os.PathLike | None = None,
    force: bool = False,
    progress: bool = True,
    recipe: TinyBaseRecipe | None = None,
    num_threads: int | None = None,
) -> Path:
    """Build the tiny base (tokenizer, pre-training, gates, save) unless already cached; return its folder.

    Atomic: everything is written to a temporary sibling folder, the report last, then ``os.replace``-d
    into place. A folder without a report (a crashed build) is removed and rebuilt. Raises
    :class:`GateError` (and keeps nothing) if a quality gate fails.

    ``num_threads`` (default :data:`DEFAULT_THREADS`) is set for the build and restored afterwards.
    """
    recipe = recipe or TinyBaseRecipe()
    if recipe.cut_hidden_size % recipe.num_attention_heads:
        raise ValueError(
            f"hidden {recipe.hidden_size} cut by {recipe.cut_ratio:.0%} -> {recipe.cut_hidden_size}, "
            f"not a multiple of {recipe.num_attention_heads} heads"
        )
    final = tiny_base_dir(cache_dir, recipe)
    if is_built(final) and not force:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    t0, cpu0 = time.time(), time.process_time()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(num_threads or DEFAULT_THREADS)
    try:
        world = toyworld.build_world(recipe.world_seed, recipe.n_people)
        tokenizer = train_tokenizer(tokenizer_training_text(world), recipe.vocab_size)
        model = make_model(recipe, tokenizer)
        train_summary = pretrain(model, tokenizer, world, recipe, progress=progress)
        report = gate_report(model, tokenizer, world, recipe)
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
    )
    if failed:
        raise GateError("tiny base failed its quality gates: " + "; ".join(failed) + f"\nreport: {report}")

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / REPORT_NAME).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")

    atomic_directory(final, write)  # replaces a stale half-written folder, or the old build if force=True
    return final


def read_build_report(path: str | os.PathLike) -> dict:
    """The ``build_report.json`` of a built tiny base."""
    return json.loads((Path(path) / REPORT_NAME).read_text())


def load_tiny_base(cache_dir: str | os.PathLike | None = None, build: bool = True):
    """``(model, tokenizer)`` of the tiny base via plain ``AutoModelForCausalLM`` / ``AutoTokenizer``.

    Builds it first if missing and ``build`` is true; otherwise a missing build raises FileNotFoundError.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tiny_base_dir(cache_dir)
    if not is_built(path):
        if not build:
            raise FileNotFoundError(
                f"no finished tiny base at {path}; run `python -m pat_lite.models.tinybase`"
            )
        path = build_tiny_base(cache_dir)
    model = AutoModelForCausalLM.from_pretrained(path)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model, tokenizer


if __name__ == "__main__":
    built = build_tiny_base(progress=True)
    print(built)
    print(json.dumps({k: v for k, v in read_build_report(built).items() if k != "cut_channels"}, indent=2))
