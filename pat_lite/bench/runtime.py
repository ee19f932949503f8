"""How `pat-lite bench` runs a model: KV cache kind, torch.compile and weight layout (a `Runtime`).

A runtime is written as `+`-joined words, e.g. `dynamic` (the default: eager, transformers' DynamicCache),
`static`, `static+compile`, `dynamic+in_out`, `static+compile+in_out`:

- `dynamic` / `static`: `DynamicCache` grows by `torch.cat` each step (copying the cache); `StaticCache`
  is allocated once at T + N tokens, written in place, and attention reads every slot under a mask.
- `compile`: the decode step (model forward on one token) goes through `torch.compile` (inductor).
  Prefill stays eager: one prefill per request, and compiling it adds a graph per prompt length.
- `in_out`: every Linear weight is stored transposed in memory — (in, out) contiguous, a column-major
  view of the same (out, in) tensor, so the values and the model are unchanged. A batch-1 `F.linear` is a
  matrix-vector product; with PyTorch's default (out, in) layout MKL walks one row of length `in` per
  output, and its throughput drops as the rows get shorter (a narrower d shortens the rows of q/k/v,
  gate/up and lm_head); with (in, out) it streams rows of length `out`.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from pat_lite.bench.common import BenchConfigError, sync

CACHES = ("dynamic", "static")
LAYOUTS = ("out_in", "in_out")


class RuntimeSpecError(BenchConfigError):
    """A runtime string `pat-lite bench` does not understand."""


@dataclass(frozen=True)
class Runtime:
    cache: str = "dynamic"
    compile: bool = False
    weight_layout: str = "out_in"

    @property
    def name(self) -> str:
        words = [self.cache] + ["compile"] * self.compile + ["in_out"] * (self.weight_layout == "in_out")
        return "+".join(words)

    @property
    def expanded_kv(self) -> bool:
        """Whether transformers repeats grouped KV heads to every head before attention in this runtime.

        transformers 5's SDPA path packs grouped queries instead (no copy) in eager decode, and passes
        `enable_gqa` when there is no mask (dynamic cache); only a masked (static-cache) call traced by
        torch.compile falls back to `repeat_kv`."""
        return self.compile and self.cache == "static"

    @classmethod
    def parse(cls, text: str | Runtime) -> Runtime:
        """`Runtime` from e.g. "static+compile+in_out"; one line naming the bad word otherwise."""
        if isinstance(text, Runtime):
            return text
        words = [w.strip() for w in str(text).split("+") if w.strip()]
        cache, compiled, layout = "dynamic", False, "out_in"
        caches = [w for w in words if w in CACHES]
        for word in words:
            if word not in (*CACHES, "compile", *LAYOUTS):
                raise RuntimeSpecError(
                    f"unknown runtime word {word!r} in {text!r}; use {' or '.join(CACHES)}, optionally "
                    "+compile and +in_out (e.g. static+compile)"
                )
        if len(caches) > 1 or len(set(words)) != len(words):
            raise RuntimeSpecError(f"runtime {text!r} names a cache or option twice")
        if caches:
            cache = caches[0]
        compiled = "compile" in words
        layout = "in_out" if "in_out" in words else "out_in"
        return cls(cache, compiled, layout)


def to_in_out_layout(model: torch.nn.Module) -> torch.nn.Module:
    """Store every Linear weight (in, out)-contiguous, in place; values and shapes stay the same.

    A tied lm_head shares its Parameter with the embedding, so both see the one re-laid tensor."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear) and module.weight.is_contiguous():
                module.weight.data = module.weight.data.t().contiguous().t()
    return model


@contextlib.contextmanager
def compile_settings(graphs_needed: int) -> Iterator[None]:
    """Let dynamo keep one graph per (model, batch size) and fail loudly rather than fall back to eager.

    Every model shares LlamaForCausalLM.forward's code object, so its default recompile limit (8) would
    silently send later models to eager mode — which would time the wrong thing."""
    import torch._dynamo.config as dynamo_config

    limit = max(8, 2 * graphs_needed)
    with dynamo_config.patch(
        recompile_limit=limit,
        accumulated_recompile_limit=max(256, 4 * limit),
        fail_on_recompile_limit_hit=True,
    ):
        yield


class Engine:
    """One model under one runtime: prefill, then greedy decode one step at a time, each timed (wall and
    process-CPU seconds), so that `measure` can interleave several engines step by step.

    CPU time (all threads of this process) does not count time spent descheduled, so on a CPU shared with
    other jobs it is the steadier measure of work; wall time is what a user waits."""

    def __init__(
        self, model: torch.nn.Module, runtime: Runtime, context: int, decode_tokens: int, device: str
    ):
        self.model, self.runtime, self.device = model, runtime, device
        self.max_len = context + decode_tokens
        self.decode_tokens = decode_tokens
        forward_params = inspect.signature(model.forward).parameters
        self.cache_kw = "cache" if "cache" in forward_params else "past_key_values"
        self.decode_forward = model
        if runtime.compile:
            # Static shapes with a static cache (one graph per batch size); a dynamic cache grows every step,
            # so dynamo's automatic dynamic shapes decide.
            self.decode_forward = torch.compile(model, dynamic=False if runtime.cache == "static" else None)
        self._static_caches: dict[int, object] = {}
        self._out = None
        self._tokens: list[torch.Tensor] = []

    def _new_cache(self, batch_size: int):
        from transformers import DynamicCache, StaticCache

        config = self.model.config
        if self.runtime.cache == "dynamic":
            return DynamicCache(config=config)
        cache = self._static_caches.get(batch_size)
        if cache is None:  # allocated on first use, then reset: compiled graphs keep its buffers' addresses
            cache = StaticCache(config=config, max_cache_len=self.max_len)
            self._static_caches[batch_size] = cache
        else:
            cache.reset()
        return cache

    def _timed(self, forward, ids: torch.Tensor, cache) -> tuple[float, float]:
        sync(self.device)
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.inference_mode():
            self._out = forward(input_ids=ids, use_cache=True, logits_to_keep=1, **{self.cache_kw: cache})
            self._tokens.append(self._out.logits[:, -1].argmax(-1, keepdim=True))
        sync(self.device)
        return time.perf_counter() - t0, time.process_time() - c0

    def prefill(self, ids: torch.Tensor) -> tuple[float, float]:
        """Start a generation: prefill + the first token's argmax (TTFT); (wall, CPU) seconds."""
        ids = ids % int(self.model.config.vocab_size)  # the floor model has a 64-token vocabulary
        self._tokens = []
        with torch.inference_mode():  # the static cache's tensors were made (and are reset) in this mode
            cache = self._new_cache(ids.shape[0])
        return self._timed(self.model, ids, cache)

    def step(self) -> tuple[float, float]:
        """One greedy decode step of the current generation; (wall, CPU) seconds."""
        if self._out is None or len(self._tokens) > self.decode_tokens:
            raise RuntimeError("call prefill() first; a generation has `decode_tokens` steps")
        cache = getattr(self._out, "cache", None) or self._out.past_key_values
        return self._timed(self.decode_forward, self._tokens[-1], cache)

    @property
    def last_tokens(self) -> torch.Tensor:
        """(batch, 1 + decode_tokens): what the last generation produced (after prefill: one token)."""
        return torch.cat(self._tokens, dim=1)

    def generate_timed(self, ids: torch.Tensor) -> tuple[float, float, float, float]:
        """(prefill wall, decode wall, prefill CPU, decode CPU) of one whole generation, alone."""
        prefill_wall, prefill_cpu = self.prefill(ids)
        steps = [self.step() for _ in range(self.decode_tokens)]
        return prefill_wall, sum(w for w, _ in steps), prefill_cpu, sum(c for _, c in steps)
