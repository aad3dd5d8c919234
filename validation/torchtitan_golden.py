#!/usr/bin/env python3
"""Golden data for dsv3's Transformer from torchtitan's own DeepSeek-V3 model.

For each configuration below, builds torchtitan's DeepSeekV3Model in float32 on the CPU with torchtitan's own layer
builders and initialisers, runs forward and backward on one batch exactly as torchtitan's trainer does (summed
cross-entropy divided by the number of valid targets), and writes one safetensors file (REFERENCE.md §4 format) to
tests/fixtures/golden/<name>.safetensors holding:

  <dsv3 parameter name>            f32  the weights, under dsv3's names (REFERENCE.md §4)
  grad.<dsv3 parameter name>       f32  d(loss)/d(weight), loss = Σ cross-entropy / valid targets
  layers.<i>.moe.expert_bias       f32  [E] the selection bias (random here, so that it matters)
  layers.<i>.moe.tokens_per_expert i64  [E] tokens routed to each expert by this forward
  inputs, labels, document_ids     i32/i64/i32 [B, S]
  __metadata__: model_args (dsv3 ModelArgs as JSON), loss, loss_sum, valid_targets, versions, command

Weights are torchtitan's init (init_states), then sharpened so the check sees every part of the math: the query and
wkv_b projections ×5 (attention at init is nearly uniform), router gates ×10 and random expert biases (selection far
from ties, and dependent on the bias). The script refuses a batch whose routing is within 1e-4 of a tie.

Deviations from torchtitan as it trains, each needed to run it on a CPU in float32, none changing the math:
  * GroupedExperts casts tokens and expert weights to bfloat16 for torch._grouped_mm; here the same grouped product
    runs in float32 (bf16 would make a 1e-5 comparison meaningless).
  * FlexAttention has no backward on the CPU; here it is scaled_dot_product_attention with the dense boolean mask of
    the same BlockMask (torchtitan's own causal and packed-document mask_mods), and the block mask is built eagerly.
Differences between torchtitan and dsv3 that the configurations account for:
  * torchtitan marks documents by positions that restart at 0 in each document (and rotates by those positions);
    dsv3 takes document ids (running EOS count, shifted by one) and positions 0..S-1. RoPE scores depend only on
    position differences within a document, so both give the same attention up to rounding.
  * YaRN: torchtitan applies it whenever scaling = "yarn" and rope_factor > 1, as dsv3 does; mscale enters the
    softmax scale on both sides.
  * Norm eps: every RMSNorm of this torchtitan version, the final one included, uses 1e-5 = dsv3's norm_eps.
  * torchtitan has no sequence-wise balance loss; the dsv3 side runs with balance_loss_coeff = 0.

Usage: pip install -r validation/requirements.txt && python validation/torchtitan_golden.py [--out DIR]
"""

import argparse
import json
import math
import re
import sys
import warnings
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import save_file
from torch.nn.attention.flex_attention import create_block_mask, create_mask

import torchtitan.models.common.attention as titan_attention
import torchtitan.models.common.moe as titan_moe
from torchtitan.components.loss import cross_entropy_loss
from torchtitan.models.common import ComplexRoPE, Embedding, Linear, RMSNorm
from torchtitan.models.deepseek_v3 import DeepSeekV3Model
# torchtitan's flavors are built by these (private) helpers; the golden models use them so that every layer, init
# and routing option is torchtitan's, only with smaller widths.
from torchtitan.models.deepseek_v3 import (_build_dsv3_layers, _EMBEDDING_INIT, _NORM_INIT,
                                           _output_linear_init)

EOS = 1  # the DeepSeek-V3 tokenizer's end-of-sentence id (REFERENCE.md §4)
MAX_FIXTURE_BYTES = 2 << 20

# dsv3 ModelArgs of each fixture (field names as lib/dsv3/model/model_args.hpp) plus the batch. Widths are cut down
# so a fixture stays under 2 MB; "debugmodel" keeps the debug flavor's head dims (128/64/128), mscale, YaRN settings,
# routing (softmax, top-3 of 8, 2 shared experts) and dense first layer. Every width is a multiple of 4 (16-byte
# strides for torch._grouped_mm).
CONFIGS = {
    "debugmodel": dict(
        model_args=dict(vocab_size=64, dim=32, inter_dim=64, moe_inter_dim=16, n_layers=2, n_dense_layers=1,
                        n_heads=2, n_routed_experts=8, n_shared_experts=2, n_activated_experts=3,
                        n_expert_groups=1, n_limited_groups=1, score_func="softmax", route_norm=False,
                        route_scale=1.0, q_lora_rank=0, kv_lora_rank=32, qk_nope_head_dim=128,
                        qk_rope_head_dim=64, v_head_dim=128, mask="causal", max_seq_len=32, original_seq_len=4096,
                        rope_theta=1e4, rope_factor=40.0, beta_fast=32.0, beta_slow=1.0, mscale=0.70,
                        norm_eps=1e-5),
        batch=2, seq_len=32, seed=1),
    # The 671B's routing (sigmoid, 4 groups of which 2 are kept, route_norm, route_scale 2.5, one shared expert),
    # q_lora_rank > 0, three layers with one dense, packed documents, and an original_seq_len small enough that
    # YaRN's blend covers pairs the batch's positions rotate noticeably.
    "sigmoid_grouped_qlora_documents": dict(
        model_args=dict(vocab_size=48, dim=32, inter_dim=48, moe_inter_dim=12, n_layers=3, n_dense_layers=1,
                        n_heads=2, n_routed_experts=8, n_shared_experts=1, n_activated_experts=3,
                        n_expert_groups=4, n_limited_groups=2, score_func="sigmoid", route_norm=True,
                        route_scale=2.5, q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=16,
                        qk_rope_head_dim=8, v_head_dim=12, mask="document_causal", max_seq_len=24,
                        original_seq_len=64, rope_theta=1e4, rope_factor=40.0, beta_fast=32.0, beta_slow=1.0,
                        mscale=1.0, norm_eps=1e-5),
        batch=2, seq_len=24, seed=4),
}


def titan_model(a):
    """torchtitan's DeepSeekV3Model for dsv3 ModelArgs `a`, built as torchtitan's flavors build theirs."""
    grouped = a["n_expert_groups"] > 1
    layers = _build_dsv3_layers(
        n_layers=a["n_layers"], n_dense_layers=a["n_dense_layers"], dim=a["dim"], n_heads=a["n_heads"],
        q_lora_rank=a["q_lora_rank"], kv_lora_rank=a["kv_lora_rank"], qk_nope_head_dim=a["qk_nope_head_dim"],
        qk_rope_head_dim=a["qk_rope_head_dim"], v_head_dim=a["v_head_dim"], mscale=a["mscale"],
        dense_hidden_dim=a["inter_dim"], moe_hidden_dim=a["moe_inter_dim"], num_experts=a["n_routed_experts"],
        num_shared_experts=a["n_shared_experts"], router_top_k=a["n_activated_experts"],
        router_score_func=a["score_func"], router_num_expert_groups=a["n_expert_groups"] if grouped else None,
        router_num_limited_groups=a["n_limited_groups"] if grouped else None, router_route_scale=a["route_scale"],
        router_route_norm=a["route_norm"], attn_backend="flex", moe_comm_backend="standard",
        non_blocking_capacity_factor=None,
        rope=ComplexRoPE.Config(dim=a["qk_rope_head_dim"], max_seq_len=a["max_seq_len"], theta=a["rope_theta"],
                                scaling="yarn", rope_factor=a["rope_factor"], beta_fast=a["beta_fast"],
                                beta_slow=a["beta_slow"], original_seq_len=a["original_seq_len"]))
    dim, vocab = a["dim"], a["vocab_size"]
    config = DeepSeekV3Model.Config(
        vocab_size=vocab, dim=dim,
        tok_embeddings=Embedding.Config(num_embeddings=vocab, embedding_dim=dim, param_init=_EMBEDDING_INIT),
        norm=RMSNorm.Config(normalized_shape=dim, eps=a["norm_eps"], param_init=_NORM_INIT),
        lm_head=Linear.Config(in_features=dim, out_features=vocab, param_init=_output_linear_init(dim)),
        layers=layers, mtp_layers=[])
    for layer in layers:  # every norm takes dsv3's one norm_eps
        for norm in (layer.attention_norm, layer.ffn_norm, layer.attention.q_norm, layer.attention.kv_norm):
            norm.eps = a["norm_eps"]
    return config.build()


def grouped_experts_in_model_dtype(self, x_RD, num_tokens_per_expert_E):
    """GroupedExperts.forward without its bfloat16 casts: the same three grouped products in the model's dtype."""
    offsets_E = torch.cumsum(num_tokens_per_expert_E, dim=0, dtype=torch.int32)
    h_RF = F.silu(self._grouped_mm(A=x_RD, B_t=self.w1_EFD.transpose(-2, -1), offs=offsets_E))
    h_RF = h_RF * self._grouped_mm(A=x_RD, B_t=self.w3_EFD.transpose(-2, -1), offs=offsets_E)
    return self._grouped_mm(A=h_RF, B_t=self.w2_EDF.transpose(-2, -1), offs=offsets_E)


def dense_flex_attention(q, k, v, *, score_mod, block_mask, scale, enable_gqa, return_aux, kernel_options):
    """flex_attention's result for a BlockMask, computed with the dense mask of its mask_mod (CPU has no flex
    backward). q, k: [B, H, L, qk], v: [B, H, L, V]."""
    assert score_mod is None and not enable_gqa and not return_aux.lse
    batch, _, length, _ = q.shape
    mask = create_mask(block_mask.mask_mod, batch, None, length, length, device=q.device)  # [B, 1, L, L]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale), None


def patch_torchtitan_for_cpu():
    titan_moe.GroupedExperts.forward = grouped_experts_in_model_dtype
    titan_attention.FlexAttention._compiled_flex_attn = dense_flex_attention
    titan_attention._compiled_create_block_mask = create_block_mask  # eager: no inductor build on the CPU


# torchtitan FQN -> dsv3 name (REFERENCE.md §4): drop ".weight", rename the output head and the routed experts.
NAME_MAP = [
    (r"^lm_head\.weight$", "output"),
    (r"^(layers\.\d+\.moe)\.routed_experts\.inner_experts\.(w\d)_E[DF][DF]$", r"\1.experts.\2"),
    (r"^(layers\.\d+\.moe)\.expert_bias_E$", r"\1.expert_bias"),
    (r"^(layers\.\d+\.moe)\.tokens_per_expert_E$", r"\1.tokens_per_expert"),
    (r"^(.*)\.weight$", r"\1"),
]


def dsv3_name(fqn):
    for pattern, replacement in NAME_MAP:
        name, hits = re.subn(pattern, replacement, fqn)
        if hits:
            return name
    raise ValueError(f"no dsv3 name for torchtitan's {fqn}")


def make_batch(a, batch, seq_len, generator):
    """Random tokens (with EOS sprinkled in for packed documents) and labels with some ignore_index.
    Returns inputs, labels, dsv3 document ids and torchtitan positions, all [B, S]."""
    inputs = torch.randint(2, a["vocab_size"], (batch, seq_len), generator=generator)
    if a["mask"] == "document_causal":
        # Several documents per row, the ends at different places in each row.
        for row, ends in enumerate(([4, 11, 12, 19], [7, 15])[:batch]):
            inputs[row, ends] = EOS
    labels = torch.randint(0, a["vocab_size"], (batch, seq_len), generator=generator)
    labels[torch.rand((batch, seq_len), generator=generator) < 0.15] = -100
    # Document id = running EOS count shifted by one (an EOS belongs to the document it ends); torchtitan's positions
    # restart at each document start, which is how its flex mask finds the documents.
    eos = (inputs == EOS).to(torch.int32)
    document_ids = torch.cumsum(eos, dim=1) - eos
    if a["mask"] == "causal":
        document_ids.zero_()
    starts = torch.ones_like(document_ids, dtype=torch.bool)
    starts[:, 1:] = document_ids[:, 1:] != document_ids[:, :-1]
    index = torch.arange(seq_len).expand(batch, seq_len)
    start_of_token = torch.cummax(torch.where(starts, index, torch.zeros_like(index)), dim=1).values
    positions = index - start_of_token
    return inputs, labels, document_ids, positions


def routing_margin(model, captured):
    """The smallest gap, over every MoE layer and token, between the last chosen and the first rejected biased score
    (and between the last kept and first dropped group score): how far the fixture is from a selection flip."""
    margin = math.inf
    for layer_id, x in captured.items():
        router = model.layers[layer_id].moe.router
        bias = model.layers[layer_id].moe.expert_bias_E
        logits = router.gate(x)
        scores = torch.sigmoid(logits) if router.score_func == "sigmoid" else F.softmax(logits, dim=-1)
        biased = scores + bias
        if router.num_expert_groups is not None:
            groups = biased.unflatten(-1, (router.num_expert_groups, -1))  # [B, S, G, E/G]
            group_scores = groups.topk(2, dim=-1).values.sum(-1)  # [B, S, G]
            kept = router.num_limited_groups
            ordered_groups = group_scores.sort(dim=-1, descending=True).values
            margin = min(margin, (ordered_groups[..., kept - 1] - ordered_groups[..., kept]).min().item())
            keep = torch.zeros_like(group_scores, dtype=torch.bool)
            keep.scatter_(-1, group_scores.topk(kept, dim=-1).indices, True)
            biased = groups.masked_fill(~keep.unsqueeze(-1), -math.inf).flatten(-2)
        ordered = biased.sort(dim=-1, descending=True).values
        k = router.top_k
        margin = min(margin, (ordered[..., k - 1] - ordered[..., k]).min().item())
    return margin


def run(name, spec, out_dir, command):
    a = spec["model_args"]
    torch.manual_seed(spec["seed"])
    model = titan_model(a)
    model.init_states()
    model.train()
    generator = torch.Generator().manual_seed(spec["seed"])
    with torch.no_grad():
        for layer in model.layers.values():
            # At init the attention scores are small and attention nearly uniform, so the loss would barely see
            # RoPE, YaRN, the softmax scale or the masks; queries and keys 5× larger make it sharp.
            attention = layer.attention
            (attention.wq if attention.q_lora_rank == 0 else attention.wq_b).weight.mul_(5.0)
            attention.wkv_b.weight.mul_(5.0)
            if not layer.moe_enabled:
                continue
            # Router logits 10× init keep every choice far from a tie that rounding differences could flip; the
            # bias is of the size of the score differences, so selection depends on it.
            layer.moe.router.gate.weight.mul_(10.0)
            layer.moe.expert_bias_E.copy_(0.02 * torch.randn(a["n_routed_experts"], generator=generator))
    inputs, labels, document_ids, positions = make_batch(a, spec["batch"], spec["seq_len"], generator)

    captured = {}  # router inputs by layer, for the selection margin
    for layer_id, layer in model.layers.items():
        if layer.moe_enabled:
            layer.moe.router.register_forward_hook(
                lambda module, args, output, layer_id=layer_id: captured.__setitem__(layer_id, args[0].detach()))
    logits = model(inputs, positions, model.get_attention_masks(positions))
    loss_sum = cross_entropy_loss(logits, labels)
    valid_targets = int((labels != -100).sum())
    loss = loss_sum / valid_targets
    loss.backward()
    margin = routing_margin(model, captured)
    if margin < 1e-4:
        sys.exit(f"{name}: a routing choice is within {margin:.2g} of flipping; pick another seed")

    tensors = {"inputs": inputs.to(torch.int32).numpy(), "labels": labels.numpy(),
               "document_ids": document_ids.to(torch.int32).numpy()}
    for fqn, parameter in model.named_parameters():
        tensors[dsv3_name(fqn)] = parameter.detach().numpy()
        tensors["grad." + dsv3_name(fqn)] = parameter.grad.numpy()
    for fqn, buffer in model.named_buffers():
        if fqn.endswith("expert_bias_E"):
            tensors[dsv3_name(fqn)] = buffer.numpy()
        elif fqn.endswith("tokens_per_expert_E"):
            tensors[dsv3_name(fqn)] = buffer.numpy().astype(np.int64)
    metadata = {"model_args": json.dumps(a), "loss": repr(loss.item()), "loss_sum": repr(loss_sum.item()),
                "valid_targets": str(valid_targets), "torch": version("torch"), "torchtitan": version("torchtitan"),
                "command": command, "routing_margin": repr(margin)}
    path = out_dir / f"{name}.safetensors"
    save_file({key: np.ascontiguousarray(value) for key, value in tensors.items()}, str(path), metadata=metadata)
    size = path.stat().st_size
    print(f"{path}: loss {loss.item():.6f} over {valid_targets} targets, routing margin {margin:.3g}, "
          f"{len(tensors)} tensors, {size / 1e6:.2f} MB")
    if size > MAX_FIXTURE_BYTES:
        sys.exit(f"{path} is {size} bytes, more than {MAX_FIXTURE_BYTES}: shrink the configuration")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "tests/fixtures/golden")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    # The router's autocast(float32) is a no-op on the CPU (float32 already) and says so at every call.
    warnings.filterwarnings("ignore", message="In CPU autocast, but the target dtype is not supported")
    torch.set_num_threads(1)  # one thread: the same summation order on every machine
    patch_torchtitan_for_cpu()
    command = "python validation/torchtitan_golden.py"
    for name, spec in CONFIGS.items():
        run(name, spec, args.out, command)


if __name__ == "__main__":
    main()
