"""What a narrower hidden size can save at most: the naive and the honest ideal speedups of `pat-lite bench`.

PAT shrinks only the hidden size d (docs/method.md §1, §8). Every weight matrix has d on one side, so the
weights shrink by d'/d; the attention inner width (heads · head_dim), the KV cache, RoPE, softmax, the MLP's
elementwise work, the logits and the per-step fixed cost (Python dispatch, kernel launches) do not.

- The **naive** ideal (`naive_costs`, `naive_speedup`) counts the matmul FLOPs (prefill) or the weight and
  KV-cache elements read (decode) and nothing else.
- The **honest** ideal (`honest_prefill_flops`, `honest_decode_elements`, `honest_speedup`) counts every
  term that the eager transformers 5 Llama forward moves or computes, split into what shrinks with d and
  what does not, and adds the fixed per-step cost measured separately on the same architecture at
  negligible width (the "floor" model, `floor_config`).

Notation: L layers, d hidden size, A = num_attention_heads · head_dim, K = num_key_value_heads · head_dim,
H attention heads, I intermediate size, V vocabulary, B batch, T context, N decode steps.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from pat_lite.core.arch import head_dim, shrunk_config


def _shape(config: PretrainedConfig) -> dict[str, int]:
    hd = head_dim(config)
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    return dict(
        L=int(config.num_hidden_layers),
        d=int(config.hidden_size),
        A=int(config.num_attention_heads) * hd,
        K=int(kv_heads) * hd,
        H=int(config.num_attention_heads),
        I=int(config.intermediate_size),
        V=int(config.vocab_size),
    )


def _layer_weights(s: dict[str, int]) -> int:
    """Weight elements of one decoder layer's matmuls: q, k, v, o, gate, up, down (all ∝ d)."""
    d, A, K, I = s["d"], s["A"], s["K"], s["I"]
    return d * A + 2 * d * K + A * d + 3 * d * I


# ------------------------------------------------------------------------------------------------ naive
def naive_costs(
    config: PretrainedConfig, context: int = 128, batch_size: int = 1, decode_tokens: int = 16
) -> dict[str, float]:
    """FLOPs of one prefill (per sequence) and elements read per decode step: the naive model.

    Prefill: q/k/v/o/gate/up/down matmuls (2 FLOPs per multiply-add, each scales with d), causal attention
    scores and values 2·A·T(T+1) per layer (independent of d: PAT keeps attention width), lm_head for the
    last position only (generate keeps one logit row), embedding = lookup = 0 FLOPs.
    Decode: every weight is read once per step (embedding: only `batch_size` rows) plus the KV cache at
    its mean length T + (N+1)/2 (independent of d). Norm weights are counted in bytes; everything else
    (activations, elementwise work, per-step overhead) is ignored.
    """
    s = _shape(config)
    L, d, A, K, V = s["L"], s["d"], s["A"], s["K"], s["V"]
    layer_weights = _layer_weights(s)
    t = context
    prefill = L * t * 2 * layer_weights + L * 2 * A * t * (t + 1) + 2 * d * V
    tied = bool(getattr(config, "tie_word_embeddings", False))
    params = L * (layer_weights + 2 * d) + d + V * d * (1 if tied else 2)
    mean_len = context + (decode_tokens + 1) / 2
    decode = L * (layer_weights + 2 * d) + d + d * V + batch_size * d
    decode += 2 * L * K * mean_len * batch_size
    return {"prefill_flops": float(prefill), "decode_elements": float(decode), "params": float(params)}


def naive_speedup(
    config: PretrainedConfig, width: int, context: int = 128, batch_size: int = 1, decode_tokens: int = 16
) -> dict[str, float]:
    """Naive upper bounds for the pruned model's speedup: prefill FLOP ratio, decode element ratio.

    Also returns the dense/pruned counts (`naive_costs`) under `dense_*`, `pruned_*`. Nearly every matmul
    has d on one side, so both ratios sit just below d/d' (1.333 at 25 %).
    """
    dense = naive_costs(config, context, batch_size, decode_tokens)
    pruned = naive_costs(shrunk_config(config, width), context, batch_size, decode_tokens)
    out = {
        "prefill": dense["prefill_flops"] / pruned["prefill_flops"],
        "decode": dense["decode_elements"] / pruned["decode_elements"],
    }
    out.update({f"dense_{k}": v for k, v in dense.items()})
    out.update({f"pruned_{k}": v for k, v in pruned.items()})
    return out


# ----------------------------------------------------------------------------------------------- honest
def honest_prefill_flops(
    config: PretrainedConfig, context: int = 128, batch_size: int = 1
) -> dict[str, float]:
    """FLOPs of one prefill of a (B, T) prompt, by term; `shrinking` ∝ d, `fixed` independent of d.

    shrinking:
      matmuls          B·T·L·2·(d·A + 2·d·K + A·d + 3·d·I) + 2·B·d·V   (lm_head on the last position only)
      norms            B·T·(2L + 1)·4d      (square, mean, rsqrt-scale, weight: ~4 FLOPs per element)
      residual adds    B·T·2L·d
    fixed:
      attention core   B·L·2·A·T(T+1)       (QKᵀ and PV over the causal triangle)
      softmax          B·L·5·H·T(T+1)/2     (max, subtract, exp, sum, divide per score)
      RoPE             B·T·L·3·(A + K)      (x·cos + rotate(x)·sin on q and k)
      SiLU·up          B·T·L·5·I            (SiLU ~4 FLOPs, the product 1)
    Elementwise FLOPs are far cheaper to count than to run (they are memory-bound), so their share of
    the time is larger than their share here; at T = 128 they are < 1 % of the FLOPs either way.
    """
    s = _shape(config)
    L, d, A, K, H, I, V = s["L"], s["d"], s["A"], s["K"], s["H"], s["I"], s["V"]
    B, T = batch_size, context
    terms = {
        "matmuls": B * T * L * 2 * _layer_weights(s) + 2 * B * d * V,
        "norms": B * T * (2 * L + 1) * 4 * d,
        "residual": B * T * 2 * L * d,
        "attention_core": B * L * 2 * A * T * (T + 1),
        "softmax": B * L * 5 * H * T * (T + 1) / 2,
        "rope": B * T * L * 3 * (A + K),
        "silu_mul": B * T * L * 5 * I,
    }
    shrinking = ("matmuls", "norms", "residual")
    out = {k: float(v) for k, v in terms.items()}
    out["shrinking"] = sum(out[k] for k in shrinking)
    out["fixed"] = sum(v for k, v in out.items() if k in terms and k not in shrinking)
    out["total"] = out["shrinking"] + out["fixed"]
    return out


def honest_decode_elements(
    config: PretrainedConfig, context: int = 128, batch_size: int = 1, decode_tokens: int = 16,
    cache: str = "dynamic", expanded_kv: bool = False,
) -> dict[str, float]:  # fmt: skip
    """Elements read + written by one greedy decode step (mean over N steps), by term.

    n̄ = T + (N+1)/2 is the mean cache length, S = T + N the static cache's length.
    shrinking (∝ d):
      weights          L·(d·A + 2·d·K + A·d + 3·d·I + 2d) + d + V·d    (matmuls, norms, lm_head)
      embedding rows   B·d
      hidden states    B·(17L + 3)·d   (per layer: 2 norms read+write 4d, 2 residual adds 6d, 5 reader
                                        inputs 5d, 2 writer outputs 2d; final norm 2d, lm_head input d)
    fixed:
      kv_append        dynamic: torch.cat copies the cache, 2·L·B·K·(2n̄ − 1); static: 2·L·B·K (index_copy)
      kv_attention     attention reads K and V: 2·L·B·K·n̄ (dynamic) or 2·L·B·K·S (static, every slot,
                       masked) + L·B·S for the mask
      kv_expand        only with `expanded_kv` (grouped heads repeated to H heads, as transformers does
                       for a masked SDPA under torch.compile): read 2·L·B·K·S, write 2·L·B·A·S, and the
                       attention then reads 2·L·B·A·S instead of 2·L·B·K·S
      attention_io     L·B·(A + 2K) written by q/k/v, 2·L·B·(A + K) RoPE read+write, 2·L·B·A the
                       attention output written and read by o_proj
      mlp_elementwise  8·L·B·I          (gate and up written 2I, SiLU read+write 2I, product 3I, down reads I)
      logits           2·B·V            (written by lm_head, read by argmax)
    Not counted: RoPE's cos/sin tables (2·B·head_dim), mask construction, per-op fixed cost (that is
    the measured floor, see `honest_speedup`).
    """
    if cache not in ("dynamic", "static"):
        raise ValueError(f"cache must be 'dynamic' or 'static', got {cache!r}")
    s = _shape(config)
    L, d, A, K, I, V = s["L"], s["d"], s["A"], s["K"], s["I"], s["V"]
    B = batch_size
    n = context + (decode_tokens + 1) / 2
    S = context + decode_tokens
    terms: dict[str, float] = {
        "weights": L * (_layer_weights(s) + 2 * d) + d + V * d,
        "embedding_rows": B * d,
        "hidden_states": B * (17 * L + 3) * d,
    }
    if cache == "dynamic":
        terms["kv_append"] = 2 * L * B * K * (2 * n - 1)
        terms["kv_attention"] = 2 * L * B * K * n
    else:
        terms["kv_append"] = 2 * L * B * K
        terms["kv_attention"] = 2 * L * B * K * S + L * B * S
    if expanded_kv:
        length = n if cache == "dynamic" else S
        terms["kv_expand"] = 2 * L * B * K * length + 2 * L * B * A * length
        terms["kv_attention"] += 2 * L * B * (A - K) * length
    terms["attention_io"] = L * B * (A + 2 * K) + 2 * L * B * (A + K) + 2 * L * B * A
    terms["mlp_elementwise"] = 8 * L * B * I
    terms["logits"] = 2 * B * V
    shrinking = ("weights", "embedding_rows", "hidden_states")
    out = {k: float(v) for k, v in terms.items()}
    out["shrinking"] = sum(out[k] for k in shrinking)
    out["fixed"] = sum(v for k, v in out.items() if k in terms and k not in shrinking)
    out["total"] = out["shrinking"] + out["fixed"]
    return out


def honest_speedup(
    dense_work: float, pruned_work: float, dense_time: float, floor_time: float = 0.0
) -> float:
    """The honest ideal speedup: t_dense / (F + (t_dense − F) · W_pruned / W_dense).

    `dense_work`, `pruned_work`: FLOPs (prefill) or elements (decode) from the honest models above, which
    count what does not shrink. `floor_time` F: the fixed per-step (or per-prefill) cost, measured on the
    same architecture at negligible width under the same runtime (`floor_config`); it is measured
    separately, never fitted. The rest of the dense time, t_dense − F, is taken to scale with the work: the
    pruned model is ideal if it moves its smaller work at the dense model's effective throughput. With
    F = 0 this is the work ratio W_dense / W_pruned. F ≥ t_dense (noise) gives 1.
    """
    if dense_time <= 0 or dense_work <= 0 or pruned_work <= 0:
        raise ValueError("times and work must be positive")
    floor = min(max(float(floor_time), 0.0), dense_time)
    return dense_time / (floor + (dense_time - floor) * pruned_work / dense_work)


def floor_config(config: PretrainedConfig) -> PretrainedConfig:
    """The same architecture at negligible width: its step time is the fixed per-step cost F.

    Same layers, heads, KV heads, attention and cache code path, but hidden size = num_attention_heads
    (the smallest transformers accepts), head_dim 2, intermediate size 8 and a 64-token vocabulary, so
    every op still runs (same count, same dispatch and kernel-launch cost) on almost no data.
    """
    floor = shrunk_config(config, int(config.num_attention_heads))
    floor.head_dim = 2
    floor.intermediate_size = 8
    floor.vocab_size = 64
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        if getattr(floor, key, None) is not None and int(getattr(floor, key)) >= 64:
            setattr(floor, key, 0)
    floor.name_or_path = f"{getattr(config, 'name_or_path', '') or config.model_type}-floor"
    return floor


def cost_columns(
    config: PretrainedConfig, width: int, context: int, batch_size: int, decode_tokens: int, cache: str,
    expanded_kv: bool,
) -> dict[str, Any]:  # fmt: skip
    """Naive ideals and the honest work of dense and pruned (the honest ideal needs the measured times)."""
    naive = naive_speedup(config, width, context, batch_size, decode_tokens)
    pruned_config = shrunk_config(config, width)
    prefill = [honest_prefill_flops(c, context, batch_size)["total"] for c in (config, pruned_config)]
    decode = [
        honest_decode_elements(c, context, batch_size, decode_tokens, cache, expanded_kv)["total"]
        for c in (config, pruned_config)
    ]
    return {
        "prefill_ideal_naive": naive["prefill"],
        "decode_ideal_naive": naive["decode"],
        "prefill_work": prefill,
        "decode_work": decode,
    }
