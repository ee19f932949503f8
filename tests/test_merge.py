"""merge_pat: the merged, smaller model computes what the tuned model computes (docs/method.md §8)."""

import warnings

import pytest
import torch
from peft import LoraConfig, get_peft_model
from tiny_models import TINY_CONFIGS, tiny_model, token_batch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from pat_lite import PATConfig, attach_pat, get_pat, merge_pat, set_pat_step
from pat_lite.core.arch import head_dim
from pat_lite.core.slicing import norm_channels

#: fp32, max abs logit difference. Measured over the 5 architectures x 5 seeds x 2 batches: at most 2.2e-6
#: with AVX-512 kernels, 1.5e-6 with generic ones (ATEN_CPU_CAPABILITY=default); a wrong fold or slice
#: moves logits by > 1e-2. Bound: 1e-4, 45x the largest measured.
TOLERANCE = 1e-4

pytestmark = pytest.mark.committed_numbers


def tuned_model(arch: str, use_dora: bool = False, seed: int = 0, **pat_settings):
    """A PAT+LoRA model whose every PAT and LoRA weight is random, mask at exactly the target count."""
    model = tiny_model(arch, seed=seed)
    attach_pat(model, PATConfig(pruning_ratio=0.25, hio_rank=4, milestone_step=10, **pat_settings))
    lora = LoraConfig(
        r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False, use_dora=use_dora
    )
    model = get_peft_model(model, lora)
    pat = get_pat(model)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for hsm in pat.hsms.values():
            hsm.L1.copy_(0.1 * torch.randn(hsm.L1.shape, generator=generator))
            hsm.scale.copy_(0.5 + torch.rand(hsm.scale.shape, generator=generator))
        width = pat.mask.width
        if pat.config.mask_mode == "fixed":
            return model.eval()
        proxies = -0.5 * torch.rand(width, generator=generator)
        keep = torch.randperm(width, generator=generator)[: pat.config.target_width]
        proxies[keep] = 0.5 * torch.rand(keep.numel(), generator=generator) + 0.01
        pat.mask.proxies.copy_(proxies)
    return model.eval()


def expected_parameter_count(config, width: int) -> int:
    """Parameters of a merged model of hidden size `width`, from the architecture's shapes."""
    hd, heads, kv, inter = (
        head_dim(config),
        config.num_attention_heads,
        config.num_key_value_heads,
        config.intermediate_size,
    )
    attn_width, kv_width = heads * hd, kv * hd
    per_layer = width * (attn_width + 2 * kv_width) + attn_width * width + 3 * width * inter + 2 * width
    if config.model_type == "qwen2" or getattr(config, "attention_bias", False):
        per_layer += attn_width + 2 * kv_width
    if getattr(config, "attention_bias", False):
        per_layer += width
    if getattr(config, "mlp_bias", False):
        per_layer += 2 * inter + width
    return 2 * config.vocab_size * width + config.num_hidden_layers * per_layer + width


@pytest.mark.parametrize("arch", sorted(TINY_CONFIGS))
def test_merged_model_reproduces_the_tuned_models_logits(arch, tmp_path):
    tuned = tuned_model(arch)
    ids = token_batch()
    with torch.no_grad():
        expected = tuned(input_ids=ids).logits
        merged = merge_pat(tuned)
        got = merged(ids).logits
    assert type(merged).__name__ == type(tiny_model(arch)).__name__
    assert merged.config.hidden_size == 48
    assert (got - expected).abs().max().item() <= TOLERANCE

    # The input model is left as it was (merge works on a copy by default).
    with torch.no_grad():
        torch.testing.assert_close(tuned(input_ids=ids).logits, expected)

    # Parameter count follows the arithmetic of the new width; embeddings are untied.
    assert sum(p.numel() for p in merged.parameters()) == expected_parameter_count(TINY_CONFIGS[arch], 48)
    assert merged.lm_head.weight.data_ptr() != merged.model.embed_tokens.weight.data_ptr()

    # A plain checkpoint: stock AutoModelForCausalLM loads it without custom code and generates.
    merged.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    assert (tmp_path / "model.safetensors").exists()
    with torch.no_grad():
        assert (reloaded(ids).logits - expected).abs().max().item() <= TOLERANCE
        out = reloaded.generate(ids[:1], max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert out.shape == (1, ids.shape[1] + 4)


def test_dora_is_folded_too():
    tuned = tuned_model("llama-gqa", use_dora=True)
    ids = token_batch()
    with torch.no_grad():
        expected = tuned(input_ids=ids).logits
        got = merge_pat(tuned)(ids).logits
    assert (got - expected).abs().max().item() <= TOLERANCE


def test_merge_inplace_consumes_the_wrapper_and_still_is_exact():
    tuned = tuned_model("mistral-gqa")
    ids = token_batch()
    with torch.no_grad():
        expected = tuned(input_ids=ids).logits
        merged = merge_pat(tuned, inplace=True)
        assert (merged(ids).logits - expected).abs().max().item() <= TOLERANCE


def test_a_mask_off_target_keeps_the_top_k_and_warns_with_both_numbers():
    tuned = tuned_model("llama-gqa")
    pat = get_pat(tuned)
    with torch.no_grad():
        pat.mask.proxies.add_(0.3)  # now more than 48 channels are positive
    active = pat.mask.active_channels()
    assert active > 48
    ids = token_batch()
    with torch.no_grad():
        expected = tuned(input_ids=ids).logits  # eval mode already uses the top-48 channels
        with pytest.warns(UserWarning, match=rf"keeps {active} channels.*not the target 48"):
            merged = merge_pat(tuned)
        assert (merged(ids).logits - expected).abs().max().item() <= TOLERANCE


def test_no_warning_when_the_mask_hits_the_target():
    tuned = tuned_model("qwen2-tied")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        merge_pat(tuned)


def test_merged_checkpoint_with_tokenizer_loads_through_auto_classes(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3} | {f"w{i}": i + 4 for i in range(93)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    merged = merge_pat(tuned_model("llama-gqa"))
    merged.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    batch = tok(["w1 w2 w3"], return_tensors="pt")
    out = model.generate(**batch, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] == batch["input_ids"].shape[1] + 3
    assert model.config.head_dim == 16 and model.config.hidden_size == 48


@pytest.mark.parametrize("arch", sorted(TINY_CONFIGS))
def test_a_fixed_norm_cut_tuned_with_hsms_merges_exactly_onto_its_channels(arch, tmp_path):
    tuned = tuned_model(arch, mask_mode="fixed", fixed_channels="norm")
    pat = get_pat(tuned)
    ids = token_batch()
    with torch.no_grad():
        expected = tuned(input_ids=ids).logits
        merged = merge_pat(tuned)
        assert (merged(ids).logits - expected).abs().max().item() <= TOLERANCE
    assert merged.config.hidden_size == 48
    assert pat.config.fixed_channels == norm_channels(tiny_model(arch), 48).tolist()
    merged.save_pretrained(tmp_path)
    with torch.no_grad():
        reloaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
        assert (reloaded(ids).logits - expected).abs().max().item() <= TOLERANCE


def test_after_s0_the_paper_schedule_trains_the_model_that_the_merge_produces():
    tuned = tuned_model("llama-gqa", schedule="paper")  # LoRA dropout 0: train mode differs only in the mask
    set_pat_step(tuned, 10)  # s0
    ids = token_batch()
    with torch.no_grad():
        training_view = tuned.train()(input_ids=ids).logits
        merged = merge_pat(tuned)
        assert (merged(ids).logits - training_view).abs().max().item() <= TOLERANCE
        set_pat_step(tuned, 9)  # one step earlier the gate is still soft
        assert (merged(ids).logits - tuned(input_ids=ids).logits).abs().max().item() > 100 * TOLERANCE


def test_writer_and_reader_biases_survive_the_fold_and_the_cut():
    tuned = tuned_model("llama-mha-bias")
    with torch.no_grad():  # transformers initialises biases to 0, which would hide a bias left unfolded
        for name, param in tuned.named_parameters():
            if name.endswith(".bias") and "lora_" not in name:
                param.copy_(0.1 * torch.randn_like(param))
    ids = token_batch()
    with torch.no_grad():
        expected = tuned(input_ids=ids).logits
        assert (merge_pat(tuned)(ids).logits - expected).abs().max().item() <= TOLERANCE
