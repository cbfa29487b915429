"""Independent float64 numpy reference of the Step-3 text model.

Written only from docs/spec /work/shared/reference/step3.md (section 1: forward pass,
section 2: checkpoint format). It does not share code with the afd engine.

Public API:
    load_checkpoint(dir) -> (cfg, W)      cfg: dict of text-config fields, W: float64 arrays
    forward(cfg, W, token_ids) -> logits  [T, vocab], one sequence from position 0
    greedy(cfg, W, prompt, n) -> (tokens, margins)
Building blocks (exported for the self-checks): rms_norm, rope_neox, attention,
route, moe, swiglu, dequant_fp8_block.
"""
from __future__ import annotations

import json
import math
import os
from typing import Dict, Iterable, List, Tuple

import ml_dtypes
import numpy as np
import safetensors

# --------------------------------------------------------------------------------------
# checkpoint loading
# --------------------------------------------------------------------------------------

_ST_DTYPES = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}

LM_PREFIX = "model.language_model."
VISION_PREFIXES = ("vision_model.", "vit_downsampler", "vit_large_projector",
                   "model.vision_model.", "model.vit_downsampler", "model.vit_large_projector")


def read_safetensors(path: str) -> Dict[str, np.ndarray]:
    """Read one .safetensors file with the safetensors library.

    safetensors.numpy.load_file cannot materialise BF16/F8_E4M3 with this numpy, so we use
    safetensors.deserialize (header parsing + raw bytes) and view the bytes with ml_dtypes.
    """
    with open(path, "rb") as f:
        blob = f.read()
    out = {}
    for name, view in safetensors.deserialize(blob):
        dt = _ST_DTYPES[view["dtype"]]
        arr = np.frombuffer(bytes(view["data"]), dtype=dt).reshape(view["shape"])
        out[name] = arr
    return out


def _read_raw_tensors(model_dir: str) -> Dict[str, np.ndarray]:
    index = os.path.join(model_dir, "model.safetensors.index.json")
    single = os.path.join(model_dir, "model.safetensors")
    if os.path.exists(index):
        with open(index) as f:
            wmap = json.load(f)["weight_map"]
        raw = {}
        for fname in sorted(set(wmap.values())):
            shard = read_safetensors(os.path.join(model_dir, fname))
            for k, v in shard.items():
                if k in wmap:
                    raw[k] = v
        missing = [k for k in wmap if k not in raw]
        if missing:
            raise KeyError(f"index lists tensors absent from shards: {missing[:5]}")
        return raw
    if os.path.exists(single):
        return read_safetensors(single)
    raise FileNotFoundError(f"no model.safetensors(.index.json) in {model_dir}")


def _canonical_name(name: str):
    """Map a stored tensor name to the canonical text-model name, or None to skip it."""
    if name.startswith(LM_PREFIX):
        rest = name[len(LM_PREFIX):]
        # Literal prefix: model.language_model.model.layers... / model.language_model.lm_head...
        if rest.startswith("model.") or rest.startswith("lm_head."):
            return rest
        # transformers-style VLM export: model.language_model.layers... == model.layers...
        return "model." + rest
    if name.startswith(VISION_PREFIXES):
        return None
    if name.startswith("model.") or name.startswith("lm_head."):
        return name
    return None


def load_config(model_dir: str) -> dict:
    with open(os.path.join(model_dir, "config.json")) as f:
        top = json.load(f)
    if "text_config" in top:
        cfg = dict(top["text_config"])
    else:
        cfg = dict(top)
    qc = top.get("quantization_config") or cfg.get("quantization_config")
    cfg["quantization_config"] = qc
    if "max_position_embedding" not in cfg and "max_position_embeddings" in cfg:
        cfg["max_position_embedding"] = cfg["max_position_embeddings"]
    return cfg


def parse_moe_layers(cfg: dict) -> set:
    s = cfg.get("moe_layers_enum")
    if s is None or s == "":
        return set()
    if isinstance(s, (list, tuple)):
        return {int(x) for x in s}
    return {int(x) for x in str(s).split(",") if x.strip() != ""}


def dequant_fp8_block(q: np.ndarray, scale_inv: np.ndarray, block=(128, 128)) -> np.ndarray:
    """real = fp8 * scale of its 128x128 block. q [..., out, in]; scale [..., ceil(out/b0), ceil(in/b1)]."""
    bo, bi = block
    qf = np.asarray(q).astype(np.float64)
    s = np.asarray(scale_inv).astype(np.float64)
    out_dim, in_dim = qf.shape[-2], qf.shape[-1]
    exp_shape = qf.shape[:-2] + (math.ceil(out_dim / bo), math.ceil(in_dim / bi))
    if s.shape != exp_shape:
        raise ValueError(f"scale_inv shape {s.shape} != expected {exp_shape} for weight {qf.shape}")
    s_full = np.repeat(np.repeat(s, bo, axis=-2), bi, axis=-1)[..., :out_dim, :in_dim]
    return qf * s_full


def load_checkpoint(model_dir: str) -> Tuple[dict, Dict[str, np.ndarray]]:
    cfg = load_config(model_dir)
    raw = _read_raw_tensors(model_dir)
    named = {}
    for k, v in raw.items():
        c = _canonical_name(k)
        if c is not None:
            named[c] = v
    qc = cfg.get("quantization_config")
    block = (128, 128)
    if qc:
        assert qc.get("quant_method") == "fp8", qc
        block = tuple(qc.get("weight_block_size", [128, 128]))
    W = {}
    for k, v in named.items():
        if k.endswith("_scale_inv"):
            continue
        sk = k + "_scale_inv"
        if v.dtype == np.dtype(ml_dtypes.float8_e4m3fn):
            if sk not in named:
                raise KeyError(f"fp8 tensor {k} without {sk}")
            W[k] = dequant_fp8_block(v, named[sk], block)
        else:
            W[k] = np.asarray(v).astype(np.float64)
    _check_shapes(cfg, W)
    return cfg, W


def expected_shapes(cfg: dict) -> Dict[str, tuple]:
    H = cfg["hidden_size"]
    V = cfg["vocab_size"]
    nh = cfg["num_attention_heads"]
    hd = cfg["head_dim"]
    sq = cfg["share_q_dim"]
    inter = cfg["intermediate_size"]
    E = cfg.get("moe_num_experts")
    mi = cfg.get("moe_intermediate_size")
    se = cfg.get("share_expert_dim")
    moe_layers = parse_moe_layers(cfg)
    shp = {"model.embed_tokens.weight": (V, H), "model.norm.weight": (H,), "lm_head.weight": (V, H)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shp[p + "input_layernorm.weight"] = (H,)
        shp[p + "post_attention_layernorm.weight"] = (H,)
        shp[p + "self_attn.q_proj.weight"] = (sq, H)
        shp[p + "self_attn.k_proj.weight"] = (hd, H)
        shp[p + "self_attn.v_proj.weight"] = (hd, H)
        shp[p + "self_attn.inter_norm.weight"] = (sq,)
        shp[p + "self_attn.wq.weight"] = (nh * hd, sq)
        shp[p + "self_attn.o_proj.weight"] = (H, nh * hd)
        if i in moe_layers:
            shp[p + "moe.gate.weight"] = (E, H)
            shp[p + "moe.gate_proj.weight"] = (E, mi, H)
            shp[p + "moe.up_proj.weight"] = (E, mi, H)
            shp[p + "moe.down_proj.weight"] = (E, H, mi)
            shp[p + "share_expert.gate_proj.weight"] = (se, H)
            shp[p + "share_expert.up_proj.weight"] = (se, H)
            shp[p + "share_expert.down_proj.weight"] = (H, se)
        else:
            shp[p + "mlp.gate_proj.weight"] = (inter, H)
            shp[p + "mlp.up_proj.weight"] = (inter, H)
            shp[p + "mlp.down_proj.weight"] = (H, inter)
    return shp


def _check_shapes(cfg: dict, W: Dict[str, np.ndarray]) -> None:
    for name, shape in expected_shapes(cfg).items():
        if name not in W:
            raise KeyError(f"missing tensor {name}")
        if tuple(W[name].shape) != tuple(shape):
            raise ValueError(f"tensor {name} has shape {W[name].shape}, expected {shape}")


# --------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------

def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def linear(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """w is [out, in] (HF layout)."""
    return x @ w.T


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def swiglu(x, gate_w, up_w, down_w):
    return linear(silu(linear(x, gate_w)) * linear(x, up_w), down_w)


def rope_cos_sin(positions: np.ndarray, d: int, theta: float):
    i = np.arange(d // 2, dtype=np.float64)
    inv_freq = theta ** (-2.0 * i / d)
    ang = np.asarray(positions, dtype=np.float64)[:, None] * inv_freq[None, :]  # [T, d/2]
    return np.cos(ang), np.sin(ang)


def rope_neox(x: np.ndarray, positions: np.ndarray, theta: float) -> np.ndarray:
    """NeoX rotate-half over the whole last dim. x [T, ..., d]; pairs x[i] with x[i+d/2]."""
    d = x.shape[-1]
    assert d % 2 == 0
    cos, sin = rope_cos_sin(positions, d, theta)
    extra = x.ndim - 2
    cos = cos.reshape(cos.shape[:1] + (1,) * extra + cos.shape[1:])
    sin = sin.reshape(sin.shape[:1] + (1,) * extra + sin.shape[1:])
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float = None) -> np.ndarray:
    """Causal MFA attention. q [T, nh, d]; k, v [T, d] (one shared K/V head) -> [T, nh, d]."""
    T, nh, d = q.shape
    if scale is None:
        scale = d ** -0.5
    s = np.einsum("thd,sd->hts", q, k) * scale  # [nh, T, T]
    mask = np.triu(np.ones((T, T), dtype=bool), k=1)
    s = np.where(mask[None], -np.inf, s)
    s = s - s.max(axis=-1, keepdims=True)
    p = np.exp(s)
    p = p / p.sum(axis=-1, keepdims=True)
    return np.einsum("hts,sd->thd", p, v)


def route(router_logits: np.ndarray, top_k: int, norm_expert_weight: bool):
    """softmax over experts, top-k of p, optional renormalisation. -> (ids [T,k], w [T,k], p [T,E])."""
    z = router_logits - router_logits.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p = p / p.sum(axis=-1, keepdims=True)
    ids = np.argsort(-p, axis=-1, kind="stable")[:, :top_k]
    w = np.take_along_axis(p, ids, axis=-1)
    if norm_expert_weight:
        w = w / w.sum(axis=-1, keepdims=True)
    return ids, w, p


def moe(x: np.ndarray, W: Dict[str, np.ndarray], prefix: str, top_k: int,
        norm_expert_weight: bool, stats: dict = None) -> np.ndarray:
    """x [T, H]; prefix 'model.layers.{i}.'"""
    logits = linear(x, W[prefix + "moe.gate.weight"])
    ids, w, p = route(logits, top_k, norm_expert_weight)
    if stats is not None:
        # gap between the k-th and (k+1)-th probability: a tiny gap makes routing fragile
        srt = -np.sort(-p, axis=-1)
        if srt.shape[-1] > top_k:
            gap = float((srt[:, top_k - 1] - srt[:, top_k]).min())
            stats["min_router_gap"] = min(stats.get("min_router_gap", np.inf), gap)
    gw = W[prefix + "moe.gate_proj.weight"]
    uw = W[prefix + "moe.up_proj.weight"]
    dw = W[prefix + "moe.down_proj.weight"]
    out = np.zeros_like(x)
    for t in range(x.shape[0]):
        for j in range(top_k):
            e = ids[t, j]
            out[t] += w[t, j] * swiglu(x[t:t + 1], gw[e], uw[e], dw[e])[0]
    out += swiglu(x, W[prefix + "share_expert.gate_proj.weight"],
                  W[prefix + "share_expert.up_proj.weight"],
                  W[prefix + "share_expert.down_proj.weight"])
    return out


# --------------------------------------------------------------------------------------
# forward
# --------------------------------------------------------------------------------------

def _bool(v) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes")
    return bool(v)


def forward(cfg: dict, W: Dict[str, np.ndarray], token_ids: Iterable[int], stats: dict = None) -> np.ndarray:
    ids = np.asarray(list(token_ids), dtype=np.int64)
    V = cfg["vocab_size"]
    if ids.size == 0:
        raise ValueError("empty sequence")
    if ids.min() < 0 or ids.max() >= V:
        raise ValueError("token id out of range")
    assert int(cfg.get("num_attention_groups", 1)) == 1
    if cfg.get("rope_scaling") not in (None, {}):
        raise NotImplementedError("rope_scaling is not part of the oracle")
    T = ids.size
    nh = cfg["num_attention_heads"]
    hd = cfg["head_dim"]
    eps = float(cfg["rms_norm_eps"])
    theta = float(cfg["rope_theta"])
    moe_layers = parse_moe_layers(cfg)
    top_k = int(cfg.get("moe_top_k", 0) or 0)
    norm_ew = _bool(cfg.get("norm_expert_weight", False))
    pos = np.arange(T)

    h = W["model.embed_tokens.weight"][ids].astype(np.float64)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        r = h
        x = rms_norm(h, W[p + "input_layernorm.weight"], eps)
        q = linear(x, W[p + "self_attn.q_proj.weight"])
        q = rms_norm(q, W[p + "self_attn.inter_norm.weight"], eps)
        q = linear(q, W[p + "self_attn.wq.weight"]).reshape(T, nh, hd)
        k = linear(x, W[p + "self_attn.k_proj.weight"])
        v = linear(x, W[p + "self_attn.v_proj.weight"])
        q = rope_neox(q, pos, theta)
        k = rope_neox(k, pos, theta)
        o = attention(q, k, v, hd ** -0.5)
        h = r + linear(o.reshape(T, nh * hd), W[p + "self_attn.o_proj.weight"])
        r = h
        x = rms_norm(h, W[p + "post_attention_layernorm.weight"], eps)
        if i in moe_layers:
            f = moe(x, W, p, top_k, norm_ew, stats)
        else:
            f = swiglu(x, W[p + "mlp.gate_proj.weight"], W[p + "mlp.up_proj.weight"],
                       W[p + "mlp.down_proj.weight"])
        h = r + f
    return linear(rms_norm(h, W["model.norm.weight"], eps), W["lm_head.weight"])


def top1_margin(row: np.ndarray) -> float:
    """(top1 - top2) / max|row|."""
    s = np.sort(row)
    return float((s[-1] - s[-2]) / max(np.abs(row).max(), 1e-30))


def greedy(cfg, W, prompt: List[int], n: int):
    """Greedy decode n tokens with full recompute. -> (tokens, relative top-1 margins)."""
    seq = list(prompt)
    toks, margins = [], []
    for _ in range(n):
        row = forward(cfg, W, seq)[-1]
        t = int(np.argmax(row))
        toks.append(t)
        margins.append(top1_margin(row))
        seq.append(t)
    return toks, margins
