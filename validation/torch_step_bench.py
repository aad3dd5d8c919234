#!/usr/bin/env python3
"""One training step of torchtitan's DeepSeekV3Model in PyTorch eager on the CPU or one GPU, timed by phase, for
comparison with `dsv3_bench step` on the same flavor, batch, sequence length and thread count (or device).

    pip install torch torchtitan
    python validation/torch_step_bench.py --flavor debugmodel --batch 4 --seq-len 256 --threads 2
    python validation/torch_step_bench.py --device cuda --flavor 16B --layers 4 --batch 2 --seq-len 4096

On a GPU the forward runs under torch.autocast(bfloat16), PyTorch's usual mixed precision with fp32 weights and
optimizer state: what dsv3 does on CUDA (fp32 storage, bf16 tensor-core products, fp32 accumulation).

A step is what dsv3's is: forward with the summed cross-entropy over the batch divided by its token count,
backward, gradient clipping at global norm 1.0, and an AdamW update (lr 8e-4, betas (0.9, 0.95), eps 1e-8, weight
decay 0.1, torch's default foreach implementation). The model is built from torchtitan's own flavor config and
initialised by its init_states(). One substitution: torchtitan's language models attend through FlexAttention,
which has no backward on the CPU, so every layer's inner attention is replaced by PyTorch's fused causal
scaled_dot_product_attention (with torchtitan's softmax scale): the same mask as dsv3's debugmodel and the
fastest attention eager PyTorch has on the CPU.

FLOPs per token are counted as dsv3 counts them (REFERENCE.md §3): 6 × active matmul parameters (output head
included, embedding and norms excluded, routed experts × top_k / n_experts) + 6 × layers × heads ×
(qk_head_dim + v_head_dim) × seq_len / 2 (causal).
"""
import argparse
import statistics
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn


class CausalSdpa(nn.Module):
    """torchtitan's inner-attention interface ((B, L, N, H) in and out) over fused causal SDPA."""

    def forward(self, q, k, v, attention_masks=None, scale=None, **kwargs):
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                             is_causal=True, scale=scale)
        return out.transpose(1, 2)


def active_matmul_parameters(model):
    """Matmul weights one token multiplies with: every Linear and expert weight but the embedding, routed
    experts counted top_k / n_experts."""
    router = next(layer.moe.router for layer in model.layers.values() if layer.moe_enabled)
    total = 0.0
    for name, parameter in model.named_parameters():
        if parameter.dim() < 2 or name.startswith("tok_embeddings"):
            continue  # norms, embedding
        share = router.top_k / router.num_experts if ".routed_experts." in name else 1.0
        total += parameter.numel() * share
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flavor", default="debugmodel")
    parser.add_argument("--batch", type=int, default=4, help="sequences per step (training.local_batch_size)")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--layers", type=int, default=0, help="> 0: keep only the first this many layers")
    args = parser.parse_args()
    device = torch.device(args.device)

    from torchtitan.models.deepseek_v3 import model_registry

    # torchtitan's MoE asks for an fp32 CPU autocast region, which PyTorch declines with a warning: fp32 is the
    # compute type here anyway.
    warnings.filterwarnings("ignore", message="In CPU autocast, but the target dtype is not supported")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = model_registry(args.flavor).model
    if args.layers > 0:
        config.layers = config.layers[:args.layers]
    with torch.device(device):
        model = config.build()
        model.init_states()
    for layer in model.layers.values():
        layer.attention.inner_attention = CausalSdpa()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=8e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)

    attention = config.layers[0].attention
    n_layers = len(config.layers)
    flops_per_token = 6 * active_matmul_parameters(model) + 6 * n_layers * attention.n_heads * (
        attention.qk_nope_head_dim + attention.qk_rope_head_dim + attention.v_head_dim) * args.seq_len / 2

    stream = torch.randint(0, config.vocab_size, (args.batch, args.seq_len + 1), device=device)
    inputs, labels = stream[:, :-1].contiguous(), stream[:, 1:].contiguous()
    positions = torch.arange(args.seq_len, device=device).unsqueeze(0).expand(args.batch, -1)
    on_gpu = device.type == "cuda"

    def now():  # the GPU's time, not the launches'
        if on_gpu:
            torch.cuda.synchronize()
        return time.perf_counter()

    phases = {"forward": [], "backward": [], "optimizer": []}
    for step in range(args.warmup + args.steps):
        optimizer.zero_grad(set_to_none=False)
        start = now()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=on_gpu):
            logits = model(inputs, positions)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), reduction="sum") / labels.numel()
        forward = now()
        loss.backward()
        backward = now()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        optimizer.step()
        done = now()
        if step >= args.warmup:
            phases["forward"].append(forward - start)
            phases["backward"].append(backward - forward)
            phases["optimizer"].append(done - backward)

    medians = {phase: statistics.median(times) for phase, times in phases.items()}
    step_seconds = sum(medians.values())
    tokens = args.batch * args.seq_len
    tokens_per_second = tokens / step_seconds
    parameters = sum(p.numel() for p in model.parameters())
    where = torch.cuda.get_device_name() if on_gpu else f"{args.threads} thread(s)"
    print(f"torch_step_bench: torch {torch.__version__} eager on {where}; torchtitan {args.flavor} "
          f"({n_layers} layers), {parameters / 1e6:.1f}M parameters; {args.batch} x {args.seq_len} tokens per step")
    print(f"forward {medians['forward'] * 1e3:9.1f} ms   backward {medians['backward'] * 1e3:9.1f} ms   "
          f"optimizer {medians['optimizer'] * 1e3:8.1f} ms   step {step_seconds * 1e3:9.1f} ms   (median of "
          f"{args.steps})")
    print(f"{tokens_per_second:.1f} tokens/s   {flops_per_token * tokens_per_second / 1e9:.2f} GFLOP/s   "
          f"({flops_per_token / 1e9:.4f} GFLOP per token, causal)   loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
