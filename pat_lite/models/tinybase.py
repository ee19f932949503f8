"""The embedded tiny base: a 1.2 M-parameter Llama pre-trained on the toy world, shipped with pat_lite.

Why it exists: PAT (docs/method.md) needs a base model that knows something a hidden-size cut can take
away, and a CPU-only, offline user needs one that loads in a second. The tiny base is built once by our
own code (`pat_lite.training.tinybase_build`, `pat-lite build-tiny-base --out DIR`), checked by quality
gates (`pat_lite.evaluation.gates`) and committed as package data in `data/tiny_base/`: safetensors
weights, the tokenizer, the config and `build_report.json` with the gate figures. No user path trains it:
the same seeded build gives other numbers on another CPU (kernels, library versions), so a build on first
use would give every machine its own base (and on some machines one that misses its gates).

This module says what the model *is* (`TinyBaseRecipe`: every knob of the build, and its hash), how its
tokenizer and its untrained network are made (`train_tokenizer`, `make_model`) and where the shipped one
lives and how it loads (`tiny_base_dir`, `check_tiny_base`, `load_tiny_base`). Loading needs nothing but
plain `AutoModelForCausalLM` / `AutoTokenizer`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from pat_lite.core.arch import width_for_ratio
from pat_lite.data import toyskills, toyworld
from pat_lite.resources import data_dir
from pat_lite.utils.checkpoints import safetensors_problem
from pat_lite.utils.errors import CheckpointError

__all__ = [
    "REPORT_NAME",
    "TinyBaseRecipe",
    "check_tiny_base",
    "load_tiny_base",
    "make_model",
    "read_build_report",
    "tiny_base_dir",
    "tokenizer_training_text",
    "train_tokenizer",
]

#: Bump when the build code changes what it produces (part of the recipe hash).
TINYBASE_VERSION = "1"
REPORT_NAME = "build_report.json"
#: What a finished tiny base folder holds; `build_report.json` is written last by a build.
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", REPORT_NAME)
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>")


@dataclass(frozen=True)
class TinyBaseRecipe:
    """Every knob of the tiny base build. The shipped base records the hash of the recipe it was built
    with (`build_report.json`, "key"); a test checks that it is this class's default.

    The gate's cut must keep exactly ``hidden_size * (1 - cut_ratio)`` channels, a multiple of
    ``num_attention_heads`` (transformers refuses a Llama config otherwise, and PAT's merged model sets
    hidden_size = d', docs/method.md §8); the build refuses a recipe whose ratio does not land on one.
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
        """Short hash of the recipe + toy-world + build-code versions."""
        blob = json.dumps(
            {"recipe": asdict(self), "toyworld": toyworld.TOYWORLD_VERSION, "tinybase": TINYBASE_VERSION},
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    def llama_config(self, vocab_size: int | None = None, **token_ids: int):
        """The model's `LlamaConfig` (untied lm_head, GQA); `vocab_size` and the special tokens' ids come
        from the tokenizer once it is trained."""
        from transformers import LlamaConfig

        return LlamaConfig(
            vocab_size=vocab_size or self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
            head_dim=self.head_dim,
            hidden_act="silu",
            max_position_embeddings=self.max_position_embeddings,
            rms_norm_eps=self.rms_norm_eps,
            rope_theta=self.rope_theta,
            tie_word_embeddings=False,
            **token_ids,
        )

    @property
    def cut_hidden_size(self) -> int:
        """The width the gate's norm cut keeps: the package's one width rule, `core.arch.width_for_ratio`,
        on the recipe's shape (a multiple of the head count, nearest hidden_size · (1 − cut_ratio))."""
        return width_for_ratio(self.llama_config(), self.cut_ratio)


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
    from transformers import LlamaForCausalLM

    config = recipe.llama_config(
        len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(recipe.seed)
    return LlamaForCausalLM(config)


# ------------------------------------------------------------------------------------- the shipped folder
def tiny_base_dir() -> Path:
    """The shipped tiny base: `data/tiny_base/` in a checkout, `pat_lite/resources/data/tiny_base/` in an
    installed wheel."""
    return data_dir() / "tiny_base"


def tiny_base_problem(path: str | os.PathLike) -> str | None:
    """Why `path` is not a complete tiny base folder (a missing file, a truncated or pointer-only
    `model.safetensors`, an unreadable build report), or None if it is complete."""
    path = Path(path)
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        return f"it lacks {', '.join(missing)}"
    if problem := safetensors_problem(path / "model.safetensors"):
        return f"model.safetensors: {problem}"
    try:
        json.loads((path / REPORT_NAME).read_text())
    except ValueError:
        return f"{REPORT_NAME} is not valid JSON"
    return None


def check_tiny_base(path: str | os.PathLike | None = None) -> Path:
    """The tiny base folder (default: the shipped one), checked; CheckpointError in one line if it is
    incomplete, naming the folder and how to restore it."""
    path = Path(path) if path is not None else tiny_base_dir()
    if problem := tiny_base_problem(path):
        restore = (
            "restore it with `git checkout -- data/tiny_base` (a checkout) or reinstall pat_lite"
            if path == tiny_base_dir()
            else "rebuild it with `pat-lite build-tiny-base --out DIR`"
        )
        raise CheckpointError(f"the tiny base at {path} is incomplete ({problem}): {restore}")
    return path


def read_build_report(path: str | os.PathLike | None = None) -> dict:
    """The ``build_report.json`` of a tiny base folder (default: the shipped one)."""
    return json.loads((Path(path or tiny_base_dir()) / REPORT_NAME).read_text())


def load_tiny_base(path: str | os.PathLike | None = None):
    """``(model, tokenizer)`` of the tiny base (default: the shipped one) via plain
    ``AutoModelForCausalLM`` / ``AutoTokenizer``, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = check_tiny_base(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    model.eval()
    return model, AutoTokenizer.from_pretrained(path)
