"""Parity of dsv3's Hugging Face conversion and forward pass against transformers' DeepseekV3ForCausalLM.

For each kind of tiny random model (q_lora_rank 0 and > 0, grouped routing, dense and MoE layers, non-zero
e_score_correction_bias, YaRN), saved in fp32, bf16 or the FP8 block format: convert with dsv3_convert_hf import,
run dsv3_eval and transformers on the same token sequences and compare per-position logits (KL of the softmaxes
and max abs difference); then export with dsv3_convert_hf, check the round trip HF -> HDF5 -> HF is bit-identical
(f32, bf16), load the export back into transformers and compare again.

  python validation/hf_parity.py --build build/release [--fixtures tests/convert/fixtures]

--fixtures writes each model with its tokens and expected logits for tests/convert/test_hf_fixtures.cpp (CI has
no Python).
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

BLOCK = 128

KINDS = {
    # name: (config overrides, stored format)
    "qlora0_f32": (dict(q_lora_rank=None, n_group=1, topk_group=1), "f32"),
    "qlora_groups_f32": (dict(q_lora_rank=12, n_group=4, topk_group=2), "f32"),
    "qlora_groups_bf16": (dict(q_lora_rank=12, n_group=4, topk_group=2), "bf16"),
    "qlora_groups_fp8": (dict(q_lora_rank=12, n_group=4, topk_group=2), "fp8"),
}


def make_config(overrides):
    base = dict(
        vocab_size=64, hidden_size=32, intermediate_size=48, moe_intermediate_size=16, num_hidden_layers=2,
        first_k_dense_replace=1, num_attention_heads=2, num_key_value_heads=2, n_routed_experts=8,
        n_shared_experts=1, num_experts_per_tok=2, routed_scaling_factor=2.5, norm_topk_prob=True,
        kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8, rms_norm_eps=1e-6,
        max_position_embeddings=64, num_nextn_predict_layers=0, initializer_range=0.1, tie_word_embeddings=False,
        rope_scaling={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16, "beta_fast": 32,
                      "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707},
    )
    base.update(overrides)
    return DeepseekV3Config(**base)


def random_model(config, seed):
    torch.manual_seed(seed)
    model = DeepseekV3ForCausalLM(config).float().eval()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("layernorm.weight") or name.endswith("norm.weight"):
                tensor.copy_(1 + 0.2 * torch.randn_like(tensor))
            elif name.endswith("e_score_correction_bias"):
                tensor.copy_(0.1 * torch.randn_like(tensor))
            elif tensor.dim() >= 2:
                tensor.normal_(0, 0.15)
    return model


def fp8_quantize(w):
    """Per 128x128 block: s = amax/448, q = W/s rounded to e4m3 (REFERENCE.md §4)."""
    rows, cols = w.shape
    br, bc = math.ceil(rows / BLOCK), math.ceil(cols / BLOCK)
    scale = torch.zeros(br, bc, dtype=torch.float32)
    q = torch.zeros(rows, cols, dtype=torch.float8_e4m3fn)
    for i in range(br):
        for j in range(bc):
            block = w[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK]
            amax = block.abs().max().item()
            s = amax / 448.0 if amax > 0 else 1.0
            scale[i, j] = s
            q[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK] = (block / scale[i, j]).clamp(-448, 448).to(
                torch.float8_e4m3fn)
    return q, scale


def fp8_dequantize(q, scale):
    w = q.to(torch.float32)
    for i in range(scale.shape[0]):
        for j in range(scale.shape[1]):
            w[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK] *= scale[i, j]
    return w


def is_fp8_weight(name, tensor):
    return tensor.dim() == 2 and name.startswith("model.layers.") and "_proj" in name


def save_kind(model, stored, folder, reference_folder):
    """Writes `model` to `folder` in the stored format, and to `reference_folder` (fp32) the weights transformers
    should see: the same values, dequantized for FP8."""
    os.makedirs(folder, exist_ok=True)
    if stored == "f32":
        model.save_pretrained(folder)
        model.save_pretrained(reference_folder)
        return
    if stored == "bf16":
        model.to(torch.bfloat16).save_pretrained(folder)
        model.to(torch.bfloat16).float().save_pretrained(reference_folder)
        return
    # fp8: the released layout, written by hand (transformers' own FP8 saving needs a GPU).
    model.save_pretrained(folder)
    saved = load_file(os.path.join(folder, "model.safetensors"))
    out, reference = {}, {}
    for name, tensor in saved.items():
        if is_fp8_weight(name, tensor):
            q, scale = fp8_quantize(tensor)
            out[name], out[name + "_scale_inv"] = q, scale
            reference[name] = fp8_dequantize(q, scale)
        elif name.endswith("e_score_correction_bias"):
            out[name] = reference[name] = tensor
        else:
            out[name] = tensor.to(torch.bfloat16)
            reference[name] = out[name].float()
    save_file(out, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    write_reference(folder, reference, reference_folder)
    config = json.load(open(os.path.join(folder, "config.json")))
    config["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                     "weight_block_size": [128, 128]}
    json.dump(config, open(os.path.join(folder, "config.json"), "w"), indent=2)


def write_reference(config_folder, state, folder):
    """An fp32 HF folder of `state` (HF names) with the config of `config_folder`, for from_pretrained."""
    os.makedirs(folder, exist_ok=True)
    config = json.load(open(os.path.join(config_folder, "config.json")))
    config.pop("quantization_config", None)
    json.dump(config, open(os.path.join(folder, "config.json"), "w"), indent=2)
    save_file({k: v.contiguous() for k, v in state.items()}, os.path.join(folder, "model.safetensors"),
              metadata={"format": "pt"})


def transformers_logits(folder, tokens):
    model = DeepseekV3ForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor(tokens)).logits.double().numpy()


def compare(reference, actual):
    """KL(softmax(reference) || softmax(actual)) per position (max over positions) and max |difference|."""
    ref = torch.log_softmax(torch.tensor(reference, dtype=torch.float64), -1)
    act = torch.log_softmax(torch.tensor(actual, dtype=torch.float64), -1)
    kl = (ref.exp() * (ref - act)).sum(-1)
    return kl.max().item(), np.abs(reference - actual).max()


def run(command):
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def load_folder(folder):
    tensors = {}
    for name in os.listdir(folder):
        if name.endswith(".safetensors"):
            tensors.update(load_file(os.path.join(folder, name)))
    return tensors


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default="build/release", help="the CMake build folder with the apps")
    parser.add_argument("--fixtures", help="write the fixtures of tests/convert here")
    parser.add_argument("--ranks", type=int, default=2, help="MPI ranks for the conversions")
    args = parser.parse_args()
    convert = os.path.join(args.build, "apps/dsv3_convert_hf/dsv3_convert_hf")
    evaluate = os.path.join(args.build, "apps/dsv3_eval/dsv3_eval")
    mpiexec = ["mpiexec", "--allow-run-as-root", "--oversubscribe", "-n", str(args.ranks)]
    rng = np.random.default_rng(7)
    tokens = rng.integers(0, 64, size=(2, 12)).tolist()
    failed = False
    work = tempfile.mkdtemp(prefix="dsv3-hf-parity-")
    for seed, (kind, (overrides, stored)) in enumerate(KINDS.items()):
        config = make_config(overrides)
        model = random_model(config, seed)
        folder = os.path.join(work, kind)
        reference = os.path.join(work, kind + "_reference")
        save_kind(model, stored, folder, reference)
        expected = transformers_logits(reference, tokens)

        checkpoint = os.path.join(work, kind + ".h5")
        run(mpiexec + [convert, "import", "--hf-dir", folder, "--output", checkpoint, "-q"])
        with open(os.path.join(work, "tokens.txt"), "w") as f:
            f.write("\n".join(" ".join(map(str, t)) for t in tokens) + "\n")
        logits_path = os.path.join(work, kind + ".npy")
        # On the CPU: the parity target (KL < 1e-9) is fp32 against fp32; a GPU multiplies in bf16.
        summary = json.loads(run([evaluate, "--checkpoint", checkpoint, "--device", "cpu", "--tokens-file",
                                  os.path.join(work, "tokens.txt"), "--output", logits_path]))
        kl, max_abs = compare(expected, np.load(logits_path))
        ok = kl < 1e-9
        print(f"{kind:20s} import+eval vs transformers: KL {kl:.3e}  max|diff| {max_abs:.3e}  "
              f"loss {summary['loss']:.6f}  {'ok' if ok else 'FAIL'}")
        failed |= not ok

        export_dtype = {"f32": "f32", "bf16": "bf16", "fp8": "fp8"}[stored]
        exported = os.path.join(work, kind + "_export")
        run(mpiexec + [convert, "export", "--checkpoint", checkpoint, "--output", exported, "--dtype", export_dtype,
                       "--shard-size", "40KB", "-q"])
        original, back = load_folder(folder), load_folder(exported)
        if stored in ("f32", "bf16"):
            same = original.keys() == back.keys() and all(
                torch.equal(original[k].float(), back[k].float()) and
                (original[k].dtype == back[k].dtype or k.endswith("e_score_correction_bias")) for k in original)
            print(f"{kind:20s} round trip HF -> HDF5 -> HF bit-identical: {same}")
            failed |= not same
            again = transformers_logits(exported, tokens)
        else:
            state = {}
            for name, tensor in back.items():
                if name.endswith("_scale_inv"):
                    continue
                scale = back.get(name + "_scale_inv")
                state[name] = fp8_dequantize(tensor, scale) if scale is not None else tensor.float()
            same_fp8 = all(torch.equal(original[k].view(torch.uint8) if original[k].dtype == torch.float8_e4m3fn
                                       else original[k].float(),
                                       back[k].view(torch.uint8) if back[k].dtype == torch.float8_e4m3fn
                                       else back[k].float()) for k in original)
            print(f"{kind:20s} FP8 re-export equals the FP8 input (weights and scales): {same_fp8}")
            failed |= not same_fp8
            write_reference(exported, state, exported + "_dequantized")
            again = transformers_logits(exported + "_dequantized", tokens)
        kl, max_abs = compare(expected, again)
        ok = kl < 1e-9
        print(f"{kind:20s} export -> transformers vs original: KL {kl:.3e}  max|diff| {max_abs:.3e}  "
              f"{'ok' if ok else 'FAIL'}")
        failed |= not ok

        if args.fixtures:
            target = os.path.join(args.fixtures, kind)
            os.makedirs(target, exist_ok=True)
            for name in ("config.json", "model.safetensors"):
                shutil.copy(os.path.join(folder, name), target)
            save_file({"tokens": torch.tensor(tokens, dtype=torch.int32),
                       "logits": torch.tensor(expected, dtype=torch.float32)},
                      os.path.join(target, "expected.safetensors"),
                      metadata={"source": "transformers DeepseekV3ForCausalLM, validation/hf_parity.py"})
    shutil.rmtree(work)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
