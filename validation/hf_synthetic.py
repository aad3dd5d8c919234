"""A large random Hugging Face DeepseekV3 checkpoint for conversion throughput measurements (no transformers needed).

  python validation/hf_synthetic.py --output /tmp/hf-big --dtype bf16|fp8 [--hidden 2048 --layers 4 --experts 64]

Writes config.json, model-0000i-of-0000n.safetensors shards of about --shard-gb and model.safetensors.index.json, one
shard in memory at a time. The values are random (bf16 normal, or e4m3 bytes with F32 128x128 scales): enough to
convert, not to run.
"""
import argparse
import json
import math
import os

import torch
from safetensors.torch import save_file


def tensors(a):
    h, heads, nope, rope, v, kv = a.hidden, a.heads, 128, 64, 128, 512
    yield "model.embed_tokens.weight", (a.vocab, h), False
    for layer in range(a.layers):
        p = f"model.layers.{layer}."
        yield p + "input_layernorm.weight", (h,), False
        yield p + "post_attention_layernorm.weight", (h,), False
        yield p + "self_attn.q_a_proj.weight", (a.q_lora, h), True
        yield p + "self_attn.q_a_layernorm.weight", (a.q_lora,), False
        yield p + "self_attn.q_b_proj.weight", (heads * (nope + rope), a.q_lora), True
        yield p + "self_attn.kv_a_proj_with_mqa.weight", (kv + rope, h), True
        yield p + "self_attn.kv_a_layernorm.weight", (kv,), False
        yield p + "self_attn.kv_b_proj.weight", (heads * (nope + v), kv), True
        yield p + "self_attn.o_proj.weight", (h, heads * v), True
        if layer == 0:
            for name, shape in (("gate_proj", (a.inter, h)), ("up_proj", (a.inter, h)), ("down_proj", (h, a.inter))):
                yield p + f"mlp.{name}.weight", shape, True
            continue
        yield p + "mlp.gate.weight", (a.experts, h), False
        yield p + "mlp.gate.e_score_correction_bias", (a.experts,), False
        for j in list(range(a.experts)) + ["shared"]:
            q = p + (f"mlp.experts.{j}." if j != "shared" else "mlp.shared_experts.")
            for name, shape in (("gate_proj", (a.moe_inter, h)), ("up_proj", (a.moe_inter, h)),
                                ("down_proj", (h, a.moe_inter))):
                yield q + f"{name}.weight", shape, True
    yield "model.norm.weight", (h,), False
    yield "lm_head.weight", (a.vocab, h), False


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True)
    parser.add_argument("--dtype", choices=["bf16", "fp8"], default="bf16")
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--experts", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--inter", type=int, default=10944)
    parser.add_argument("--moe-inter", type=int, default=1408)
    parser.add_argument("--q-lora", type=int, default=1536)
    parser.add_argument("--shard-gb", type=float, default=1.0)
    a = parser.parse_args()
    os.makedirs(a.output, exist_ok=True)
    config = {
        "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "vocab_size": a.vocab,
        "hidden_size": a.hidden, "intermediate_size": a.inter, "moe_intermediate_size": a.moe_inter,
        "num_hidden_layers": a.layers, "first_k_dense_replace": 1, "num_attention_heads": a.heads,
        "num_key_value_heads": a.heads, "n_routed_experts": a.experts, "n_shared_experts": 1,
        "num_experts_per_tok": 8, "n_group": 8, "topk_group": 4, "routed_scaling_factor": 2.5,
        "scoring_func": "sigmoid", "topk_method": "noaux_tc", "norm_topk_prob": True, "q_lora_rank": a.q_lora,
        "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
        "rope_theta": 10000, "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
                                              "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
        "max_position_embeddings": 163840, "rms_norm_eps": 1e-6, "num_nextn_predict_layers": 0,
        "tie_word_embeddings": False}
    if a.dtype == "fp8":
        config["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                         "weight_block_size": [128, 128]}
    json.dump(config, open(os.path.join(a.output, "config.json"), "w"), indent=2)
    shards, current, size = [], {}, 0  # shards: the tensor names and bytes of each written shard

    def flush():
        save_file(current, os.path.join(a.output, f"shard-{len(shards) + 1}.tmp"), metadata={"format": "pt"})
        shards.append({k: t.numel() * t.element_size() for k, t in current.items()})
        current.clear()

    for name, shape, linear in tensors(a):
        if a.dtype == "fp8" and linear:
            current[name] = torch.randint(0, 126, shape, dtype=torch.uint8).view(torch.float8_e4m3fn)
            current[name + "_scale_inv"] = torch.rand(math.ceil(shape[0] / 128), math.ceil(shape[1] / 128)) * 1e-3
        elif name.endswith("e_score_correction_bias"):
            current[name] = torch.randn(shape)
        else:
            current[name] = torch.randn(shape, dtype=torch.bfloat16) * 0.02
        if sum(t.numel() * t.element_size() for t in current.values()) >= a.shard_gb * 1e9:
            flush()
    if current:
        flush()
    weight_map, total = {}, 0
    for i, shard in enumerate(shards):
        final = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        os.rename(os.path.join(a.output, f"shard-{i + 1}.tmp"), os.path.join(a.output, final))
        for name, nbytes in shard.items():
            weight_map[name] = final
            total += nbytes
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map},
              open(os.path.join(a.output, "model.safetensors.index.json"), "w"), indent=2)
    print(f"{a.output}: {total / 1e9:.2f} GB in {len(shards)} shards")


if __name__ == "__main__":
    main()
