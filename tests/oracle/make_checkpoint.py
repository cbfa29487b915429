#!/usr/bin/env python3
"""Write a random tiny Step-3-format checkpoint (HF layout, safetensors), independent of afd.

Layout per docs (step3.md section 2). BF16 everywhere, or FP8 (e4m3, 128x128 block scales,
DeepSeek-V3 convention) for every linear weight except embed_tokens, lm_head and the router.

Usage: python3 tests/oracle/make_checkpoint.py --out DIR [options]   (see --help)
Library: make_checkpoint(out_dir, **options) -> config dict (the text config).
"""
from __future__ import annotations

import argparse
import json
import math
import os
from typing import Dict

import ml_dtypes
import numpy as np
import safetensors.numpy as stnp

FP8_MAX = 448.0
BLOCK = 128
LM_PREFIX = "model.language_model."

DEFAULTS = dict(
    hidden=200,
    heads=3,
    head_dim=72,
    share_q_dim=136,
    intermediate=300,
    experts=5,
    top_k=2,
    moe_inter=150,
    share_expert_dim=130,
    vocab=333,
    layers=3,
    moe_layers="1",
    rope_theta=10000.0,
    rms_eps=1e-5,
    norm_expert_weight=False,
    dtype="bf16",
    shards=1,
    nested=False,
    prefix=False,
    prefix_style="full",
    vision=False,
    seed=0,
)


def quantize_fp8_block(w: np.ndarray):
    """w [..., out, in] float -> (fp8 array, float32 scale_inv [..., ceil(out/128), ceil(in/128)])."""
    w = np.asarray(w, dtype=np.float64)
    out_dim, in_dim = w.shape[-2:]
    nbo, nbi = math.ceil(out_dim / BLOCK), math.ceil(in_dim / BLOCK)
    lead = w.shape[:-2]
    pad = np.zeros(lead + (nbo * BLOCK, nbi * BLOCK))
    pad[..., :out_dim, :in_dim] = w
    blocks = pad.reshape(lead + (nbo, BLOCK, nbi, BLOCK))
    amax = np.abs(blocks).max(axis=(-3, -1))  # [..., nbo, nbi]
    scale = (amax / FP8_MAX).astype(np.float32)
    scale = np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)
    s_full = np.repeat(np.repeat(scale.astype(np.float64), BLOCK, axis=-2), BLOCK, axis=-1)
    s_full = s_full[..., :out_dim, :in_dim]
    q = np.clip(w / s_full, -FP8_MAX, FP8_MAX).astype(ml_dtypes.float8_e4m3fn)
    return np.ascontiguousarray(q), np.ascontiguousarray(scale)


def text_config(o: dict) -> dict:
    return {
        "architectures": ["Step3TextForCausalLM"],
        "model_type": "step3_text",
        "hidden_size": o["hidden"],
        "intermediate_size": o["intermediate"],
        "num_attention_heads": o["heads"],
        "num_attention_groups": 1,
        "num_hidden_layers": o["layers"],
        "head_dim": o["head_dim"],
        "share_q_dim": o["share_q_dim"],
        "moe_intermediate_size": o["moe_inter"],
        "moe_num_experts": o["experts"],
        "moe_top_k": o["top_k"],
        "share_expert_dim": o["share_expert_dim"],
        "moe_layers_enum": o["moe_layers"],
        "norm_expert_weight": bool(o["norm_expert_weight"]),
        "vocab_size": o["vocab"],
        "rms_norm_eps": o["rms_eps"],
        "rope_theta": o["rope_theta"],
        "rope_scaling": None,
        "max_position_embedding": 4096,
        "torch_dtype": "bfloat16",
    }


def random_weights(o: dict) -> Dict[str, np.ndarray]:
    """float64 master weights, canonical names."""
    rng = np.random.default_rng(o["seed"])
    H, V, nh, hd = o["hidden"], o["vocab"], o["heads"], o["head_dim"]
    sq, inter, E = o["share_q_dim"], o["intermediate"], o["experts"]
    mi, se = o["moe_inter"], o["share_expert_dim"]
    moe_layers = {int(x) for x in str(o["moe_layers"]).split(",") if x.strip()}

    def lin(out_dim, in_dim, lead=()):
        return rng.standard_normal(lead + (out_dim, in_dim)) / math.sqrt(in_dim)

    def norm(n):
        return 1.0 + 0.1 * rng.standard_normal(n)

    W = {"model.embed_tokens.weight": rng.standard_normal((V, H))}
    for i in range(o["layers"]):
        p = f"model.layers.{i}."
        W[p + "input_layernorm.weight"] = norm(H)
        W[p + "post_attention_layernorm.weight"] = norm(H)
        W[p + "self_attn.q_proj.weight"] = lin(sq, H)
        W[p + "self_attn.k_proj.weight"] = lin(hd, H)
        W[p + "self_attn.v_proj.weight"] = lin(hd, H)
        W[p + "self_attn.inter_norm.weight"] = norm(sq)
        W[p + "self_attn.wq.weight"] = lin(nh * hd, sq)
        W[p + "self_attn.o_proj.weight"] = lin(H, nh * hd)
        if i in moe_layers:
            # router a bit sharper than 1/sqrt(H) so top-k choices are well separated
            W[p + "moe.gate.weight"] = 2.0 * lin(E, H)
            W[p + "moe.gate_proj.weight"] = lin(mi, H, (E,))
            W[p + "moe.up_proj.weight"] = lin(mi, H, (E,))
            W[p + "moe.down_proj.weight"] = lin(H, mi, (E,))
            W[p + "share_expert.gate_proj.weight"] = lin(se, H)
            W[p + "share_expert.up_proj.weight"] = lin(se, H)
            W[p + "share_expert.down_proj.weight"] = lin(H, se)
        else:
            W[p + "mlp.gate_proj.weight"] = lin(inter, H)
            W[p + "mlp.up_proj.weight"] = lin(inter, H)
            W[p + "mlp.down_proj.weight"] = lin(H, inter)
    W["model.norm.weight"] = norm(H)
    W["lm_head.weight"] = lin(V, H)
    return W


def is_quantized(name: str) -> bool:
    if not name.endswith(".weight"):
        return False
    if name in ("model.embed_tokens.weight", "lm_head.weight"):
        return False
    if name.endswith("moe.gate.weight") or name.endswith("norm.weight"):
        return False
    return True


def vision_tensors(rng) -> Dict[str, np.ndarray]:
    return {
        "vision_model.embeddings.patch_embedding.weight":
            rng.standard_normal((16, 3, 4, 4)).astype(ml_dtypes.bfloat16),
        "vision_model.encoder.layers.0.mlp.fc1.weight":
            rng.standard_normal((37, 16)).astype(ml_dtypes.bfloat16),
        "vision_model.encoder.layers.0.mlp.fc1.bias": rng.standard_normal(37).astype(np.float32),
        "vit_downsampler.weight": rng.standard_normal((24, 16, 2, 2)).astype(ml_dtypes.bfloat16),
        "vit_downsampler2.weight": rng.standard_normal((24, 24, 3, 3)).astype(ml_dtypes.bfloat16),
        "vit_large_projector.weight": rng.standard_normal((200, 96)).astype(ml_dtypes.bfloat16),
    }


def stored_name(name: str, o: dict) -> str:
    if not o["prefix"]:
        return name
    if o["prefix_style"] == "full":  # model.language_model.model.layers..., model.language_model.lm_head...
        return LM_PREFIX + name
    # "replace": transformers-style model.language_model.layers..., lm_head stays
    if name.startswith("model."):
        return LM_PREFIX + name[len("model."):]
    return name


def write_tensors(out_dir: str, tensors: Dict[str, np.ndarray], shards: int) -> None:
    names = sorted(tensors)
    meta = {"format": "pt"}
    if shards <= 1:
        stnp.save_file({k: tensors[k] for k in names}, os.path.join(out_dir, "model.safetensors"),
                       metadata=meta)
        return
    # round-robin: a weight and its _scale_inv usually land in different shards
    groups = [dict() for _ in range(shards)]
    for j, k in enumerate(names):
        groups[j % shards][k] = tensors[k]
    wmap, total = {}, 0
    for s, g in enumerate(groups):
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        stnp.save_file(g, os.path.join(out_dir, fname), metadata=meta)
        for k, v in g.items():
            wmap[k] = fname
            total += v.nbytes
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": wmap}, f, indent=1)


def make_checkpoint(out_dir: str, **opts) -> dict:
    o = dict(DEFAULTS)
    unknown = set(opts) - set(o)
    if unknown:
        raise TypeError(f"unknown options {unknown}")
    o.update(opts)
    os.makedirs(out_dir, exist_ok=True)
    master = random_weights(o)
    tensors = {}
    for name, w in master.items():
        sname = stored_name(name, o)
        if o["dtype"] == "fp8" and is_quantized(name):
            q, s = quantize_fp8_block(w)
            tensors[sname] = q
            tensors[sname + "_scale_inv"] = s
        elif o["dtype"] in ("bf16", "fp8"):
            tensors[sname] = np.ascontiguousarray(w.astype(ml_dtypes.bfloat16))
        else:
            raise ValueError(f"dtype {o['dtype']}")
    if o["vision"]:
        tensors.update(vision_tensors(np.random.default_rng(o["seed"] + 1000)))
    write_tensors(out_dir, tensors, int(o["shards"]))

    tc = text_config(o)
    qc = None
    if o["dtype"] == "fp8":
        qc = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
              "weight_block_size": [BLOCK, BLOCK]}
    if o["nested"]:
        cfg = {
            "architectures": ["Step3VLForConditionalGeneration"],
            "model_type": "step3_vl",
            "text_config": tc,
            "vision_config": {"model_type": "step3_vision_encoder", "hidden_size": 16,
                              "num_hidden_layers": 1, "image_size": 8, "patch_size": 4},
            "torch_dtype": "bfloat16",
        }
    else:
        cfg = dict(tc)
    if qc is not None:
        cfg["quantization_config"] = qc
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    return tc


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory")
    d = DEFAULTS
    ap.add_argument("--seed", type=int, default=d["seed"])
    ap.add_argument("--hidden", type=int, default=d["hidden"])
    ap.add_argument("--heads", type=int, default=d["heads"])
    ap.add_argument("--head-dim", type=int, default=d["head_dim"])
    ap.add_argument("--share-q-dim", type=int, default=d["share_q_dim"])
    ap.add_argument("--intermediate", type=int, default=d["intermediate"])
    ap.add_argument("--experts", type=int, default=d["experts"])
    ap.add_argument("--top-k", type=int, default=d["top_k"])
    ap.add_argument("--moe-inter", type=int, default=d["moe_inter"])
    ap.add_argument("--share-expert-dim", type=int, default=d["share_expert_dim"])
    ap.add_argument("--vocab", type=int, default=d["vocab"])
    ap.add_argument("--layers", type=int, default=d["layers"])
    ap.add_argument("--moe-layers", default=d["moe_layers"], help='comma-separated, e.g. "1,2"')
    ap.add_argument("--rope-theta", type=float, default=d["rope_theta"])
    ap.add_argument("--rms-eps", type=float, default=d["rms_eps"])
    ap.add_argument("--norm-expert-weight", action="store_true")
    ap.add_argument("--dtype", choices=["bf16", "fp8"], default=d["dtype"])
    ap.add_argument("--shards", type=int, default=d["shards"])
    ap.add_argument("--nested", action="store_true", help="step3_vl config with text_config")
    ap.add_argument("--prefix", action="store_true", help="store LM tensors under model.language_model.")
    ap.add_argument("--prefix-style", choices=["full", "replace"], default=d["prefix_style"],
                    help="full: model.language_model.<name>; replace: model. -> model.language_model.")
    ap.add_argument("--vision", action="store_true", help="add vision_model.* / vit_* tensors")
    a = ap.parse_args(argv)
    opts = {k: v for k, v in vars(a).items() if k != "out"}
    make_checkpoint(a.out, **opts)
    print(a.out)


if __name__ == "__main__":
    main()
