"""Self-checks of the numpy Step-3 oracle and the checkpoint writer (no engine needed)."""
from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import make_checkpoint as MC  # noqa: E402
import step3_ref as R  # noqa: E402


# ------------------------------------------------------------------ fp8 block dequantisation

def test_fp8_dequant_known_block_scales():
    out_dim, in_dim = 130, 260  # 2 x 3 blocks, partial last block in both dims
    q = np.full((out_dim, in_dim), 1.5, dtype=np.float32).astype(ml_dtypes.float8_e4m3fn)
    q[0, 0] = np.float32(-448.0).astype(ml_dtypes.float8_e4m3fn)
    scale = np.array([[0.5, 2.0, 4.0], [8.0, 0.25, 1.0]], dtype=np.float32)
    w = R.dequant_fp8_block(q, scale)
    assert w.shape == (out_dim, in_dim)
    assert w[0, 0] == -224.0
    assert w[0, 1] == 0.75 and w[127, 127] == 0.75
    assert w[0, 128] == 3.0 and w[127, 255] == 3.0
    assert w[0, 256] == 6.0 and w[127, 259] == 6.0
    assert w[128, 0] == 12.0 and w[129, 127] == 12.0
    assert w[128, 128] == 0.375
    assert w[129, 259] == 1.5
    # stacked experts: leading expert dim on weight and scale
    qs = np.stack([q, q])
    ss = np.stack([scale, 2 * scale])
    ws = R.dequant_fp8_block(qs, ss)
    assert ws.shape == (2, out_dim, in_dim)
    np.testing.assert_array_equal(ws[0], w)
    np.testing.assert_array_equal(ws[1], 2 * w)
    with pytest.raises(ValueError):
        R.dequant_fp8_block(q, scale[:, :2])


def test_fp8_quantize_roundtrip():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 300, 140))
    w[1, 256:, :] = 0.0  # an all-zero partial block: scale guarded to 1, values exactly 0
    q, s = MC.quantize_fp8_block(w)
    assert q.dtype == np.dtype(ml_dtypes.float8_e4m3fn) and s.dtype == np.float32
    assert s.shape == (3, 3, 2)
    assert s[1, 2, 0] == 1.0 and s[1, 2, 1] == 1.0
    # block max maps to +-448 exactly
    blk = w[0, :128, :128]
    assert np.isclose(s[0, 0, 0], np.abs(blk).max() / 448.0, rtol=1e-7)
    dq = R.dequant_fp8_block(q, s)
    assert np.all(dq[1, 256:] == 0.0)
    # e4m3: 3 mantissa bits -> relative rounding error <= 2^-4 (normals); absolute floor for subnormals
    err = np.abs(dq - w)
    bound = np.maximum(np.abs(w) * 2.0 ** -4, np.repeat(np.repeat(s.astype(np.float64), 128, -2), 128, -1)
                       [..., :300, :140] * 2.0 ** -9)
    assert np.all(err <= bound * (1 + 1e-9))
    assert np.abs(dq[0, :128, :128]).max() == pytest.approx(np.abs(blk).max(), rel=1e-6)


# ---------------------------------------------------------------------------------- norms

def test_rms_norm_known_value():
    x = np.array([[3.0, 4.0]])
    w = np.array([1.0, 2.0])
    y = R.rms_norm(x, w, 0.0)
    rms = math.sqrt(12.5)
    np.testing.assert_allclose(y, [[3.0 / rms, 8.0 / rms]], rtol=1e-15)
    y2 = R.rms_norm(x, w, 1e-5)
    rms2 = math.sqrt(12.5 + 1e-5)
    np.testing.assert_allclose(y2, [[3.0 / rms2, 8.0 / rms2]], rtol=1e-15)


# ----------------------------------------------------------------------------------- RoPE

def test_rope_position_zero_is_identity():
    rng = np.random.default_rng(1)
    q = rng.standard_normal((1, 3, 72))
    k = rng.standard_normal((1, 72))
    np.testing.assert_array_equal(R.rope_neox(q, np.array([0]), 10000.0), q)
    np.testing.assert_array_equal(R.rope_neox(k, np.array([0]), 500000.0), k)


def test_rope_neox_rotate_half_values():
    x = np.array([[1.0, 2.0, 3.0, 4.0]])
    y = R.rope_neox(x, np.array([1]), 10000.0)[0]
    # d=4: inv_freq = [1, 10000^-0.5 = 0.01]; pairs (x0, x2) and (x1, x3)
    a, b = 1.0, 0.01
    exp = [1 * math.cos(a) - 3 * math.sin(a), 2 * math.cos(b) - 4 * math.sin(b),
           3 * math.cos(a) + 1 * math.sin(a), 4 * math.cos(b) + 2 * math.sin(b)]
    np.testing.assert_allclose(y, exp, rtol=1e-14)
    # relative-position property: <R(m)q, R(n)k> depends only on m-n
    rng = np.random.default_rng(2)
    q, k = rng.standard_normal((1, 8)), rng.standard_normal((1, 8))
    d1 = R.rope_neox(q, np.array([7]), 100.0) @ R.rope_neox(k, np.array([3]), 100.0).T
    d2 = R.rope_neox(q, np.array([14]), 100.0) @ R.rope_neox(k, np.array([10]), 100.0).T
    np.testing.assert_allclose(d1, d2, rtol=1e-12)


# ------------------------------------------------------------------------------ attention

def test_attention_single_token_returns_v():
    rng = np.random.default_rng(3)
    q = rng.standard_normal((1, 4, 16)) * 10
    k = rng.standard_normal((1, 16))
    v = rng.standard_normal((1, 16))
    o = R.attention(q, k, v)
    assert o.shape == (1, 4, 16)
    for h in range(4):
        np.testing.assert_allclose(o[0, h], v[0], rtol=1e-15)


def test_attention_two_tokens_causal_known_weights():
    d = 4
    q = np.zeros((2, 2, d))
    q[1, 0] = [2.0, 0, 0, 0]  # head 0 at t=1: scores (q.k)/sqrt(4) = [0, 1]
    k = np.array([[0.0, 0, 0, 0], [1.0, 0, 0, 0]])
    v = np.array([[1.0, 0, 0, 0], [0.0, 1, 0, 0]])
    o = R.attention(q, k, v)
    np.testing.assert_allclose(o[0, 0], v[0])  # causal: t=0 sees only itself
    np.testing.assert_allclose(o[0, 1], v[0])
    e = math.e
    np.testing.assert_allclose(o[1, 0], [1 / (1 + e), e / (1 + e), 0, 0], rtol=1e-14)
    np.testing.assert_allclose(o[1, 1], [0.5, 0.5, 0, 0], rtol=1e-14)  # zero query: uniform


# ------------------------------------------------------------------------------------ MoE

def test_route_known_values_and_renormalisation():
    logits = np.log(np.array([[1.0, 2.0, 3.0, 4.0]]))  # p = [.1, .2, .3, .4]
    ids, w, p = R.route(logits, 2, False)
    np.testing.assert_allclose(p, [[0.1, 0.2, 0.3, 0.4]], rtol=1e-14)
    assert ids.tolist() == [[3, 2]]
    np.testing.assert_allclose(w, [[0.4, 0.3]], rtol=1e-14)
    ids, w, _ = R.route(logits, 2, True)
    assert ids.tolist() == [[3, 2]]
    np.testing.assert_allclose(w, [[4 / 7, 3 / 7]], rtol=1e-14)
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-15)


def _tiny_moe_weights(E, H, mi, se, identical_experts):
    rng = np.random.default_rng(4)
    p = "model.layers.0."
    g = rng.standard_normal((E, mi, H)) / math.sqrt(H)
    u = rng.standard_normal((E, mi, H)) / math.sqrt(H)
    dn = rng.standard_normal((E, H, mi)) / math.sqrt(mi)
    if identical_experts:
        g[:], u[:], dn[:] = g[0], u[0], dn[0]
    return {
        p + "moe.gate.weight": rng.standard_normal((E, H)),
        p + "moe.gate_proj.weight": g, p + "moe.up_proj.weight": u, p + "moe.down_proj.weight": dn,
        p + "share_expert.gate_proj.weight": rng.standard_normal((se, H)) / math.sqrt(H),
        p + "share_expert.up_proj.weight": rng.standard_normal((se, H)) / math.sqrt(H),
        p + "share_expert.down_proj.weight": rng.standard_normal((H, se)) / math.sqrt(se),
    }


def test_moe_norm_expert_weight_sums_to_one():
    E, H, mi, se, k = 5, 8, 6, 7, 3
    W = _tiny_moe_weights(E, H, mi, se, identical_experts=True)
    p = "model.layers.0."
    x = np.random.default_rng(5).standard_normal((4, H))
    expert = R.swiglu(x, W[p + "moe.gate_proj.weight"][0], W[p + "moe.up_proj.weight"][0],
                      W[p + "moe.down_proj.weight"][0])
    shared = R.swiglu(x, W[p + "share_expert.gate_proj.weight"], W[p + "share_expert.up_proj.weight"],
                      W[p + "share_expert.down_proj.weight"])
    # identical experts: renormalised weights sum to 1 -> output = expert + shared
    np.testing.assert_allclose(R.moe(x, W, p, k, True), expert + shared, rtol=1e-12, atol=1e-14)
    # without renormalisation: output = (sum of top-k softmax probs) * expert + shared
    _, w, prob = R.route(x @ W[p + "moe.gate.weight"].T, k, False)
    s = w.sum(-1, keepdims=True)
    assert np.all(s < 1.0) and np.all(s > k / E)
    np.testing.assert_allclose(s[:, 0], -np.sort(-prob, -1)[:, :k].sum(-1), rtol=1e-14)
    np.testing.assert_allclose(R.moe(x, W, p, k, False), s * expert + shared, rtol=1e-12, atol=1e-14)


def test_moe_matches_explicit_sum():
    E, H, mi, se, k = 4, 8, 6, 7, 2
    W = _tiny_moe_weights(E, H, mi, se, identical_experts=False)
    p = "model.layers.0."
    x = np.random.default_rng(6).standard_normal((3, H))
    logits = x @ W[p + "moe.gate.weight"].T
    out = R.moe(x, W, p, k, False)
    for t in range(3):
        pr = np.exp(logits[t] - logits[t].max())
        pr /= pr.sum()
        top = np.argsort(-pr)[:k]
        exp = sum(pr[e] * R.swiglu(x[t], W[p + "moe.gate_proj.weight"][e], W[p + "moe.up_proj.weight"][e],
                                   W[p + "moe.down_proj.weight"][e]) for e in top)
        exp = exp + R.swiglu(x[t], W[p + "share_expert.gate_proj.weight"],
                             W[p + "share_expert.up_proj.weight"], W[p + "share_expert.down_proj.weight"])
        np.testing.assert_allclose(out[t], exp, rtol=1e-12)


def test_swiglu_known_value():
    x = np.array([[1.0]])
    y = R.swiglu(x, np.array([[2.0]]), np.array([[3.0]]), np.array([[0.5]]))
    silu2 = 2.0 / (1.0 + math.exp(-2.0))
    assert y[0, 0] == pytest.approx(0.5 * silu2 * 3.0, rel=1e-15)


# ----------------------------------------------------------- writer + loader + forward

def _st_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


@pytest.mark.parametrize("opts", [
    dict(dtype="bf16", shards=1),
    dict(dtype="bf16", shards=3, nested=True, prefix=True, vision=True),
    dict(dtype="bf16", shards=2, nested=True, prefix=True, prefix_style="replace", vision=True),
    dict(dtype="fp8", shards=1),
    dict(dtype="fp8", shards=2, hidden=260, experts=4, top_k=3, moe_layers="1,2", nested=True),
    dict(dtype="bf16", experts=4, top_k=3, moe_layers="1,2", norm_expert_weight=True),
], ids=["bf16", "bf16_nested_prefix_vision", "bf16_prefix_replace", "fp8", "fp8_shards", "norm_ew"])
def test_checkpoint_roundtrip(tmp_path, opts):
    d = str(tmp_path / "ck")
    tc = MC.make_checkpoint(d, seed=7, **opts)
    cfg, W = R.load_checkpoint(d)
    for key in ("hidden_size", "num_attention_heads", "head_dim", "share_q_dim", "moe_layers_enum",
                "moe_top_k", "norm_expert_weight", "vocab_size", "rms_norm_eps", "rope_theta"):
        assert cfg[key] == tc[key]
    o = dict(MC.DEFAULTS, seed=7, **opts)
    master = MC.random_weights(o)
    assert set(W) == set(master), set(W) ^ set(master)  # vision tensors and scales dropped
    for name, w in master.items():
        got = W[name]
        assert got.shape == w.shape and got.dtype == np.float64
        if opts["dtype"] == "fp8" and MC.is_quantized(name):
            assert np.all(np.abs(got - w) <= np.abs(w) * 2.0 ** -4 + np.abs(w).max() * 2.0 ** -9), name
        else:
            np.testing.assert_allclose(got, w, rtol=2.0 ** -8, err_msg=name)

    # on-disk format details
    files = sorted(f for f in os.listdir(d) if f.endswith(".safetensors"))
    shards = opts.get("shards", 1)
    if shards == 1:
        assert files == ["model.safetensors"]
    else:
        assert files == [f"model-{i:05d}-of-{shards:05d}.safetensors" for i in range(1, shards + 1)]
        idx = json.load(open(os.path.join(d, "model.safetensors.index.json")))
        assert set(idx["weight_map"].values()) == set(files)
    hdr = {}
    for f in files:
        hdr.update({k: v for k, v in _st_header(os.path.join(d, f)).items() if k != "__metadata__"})
    pre = ("model.language_model." if opts.get("prefix") else "")
    lm = pre + "lm_head.weight" if opts.get("prefix_style", "full") == "full" else "lm_head.weight"
    assert hdr[lm]["dtype"] == "BF16"
    if opts["dtype"] == "fp8":
        wq = pre + "model.layers.0.self_attn.wq.weight"
        assert hdr[wq]["dtype"] == "F8_E4M3"
        assert hdr[wq + "_scale_inv"]["dtype"] == "F32"
        assert hdr[wq + "_scale_inv"]["shape"] == [math.ceil(o["heads"] * o["head_dim"] / 128),
                                                   math.ceil(o["share_q_dim"] / 128)]
        gp = pre + "model.layers.1.moe.gate_proj.weight"
        assert hdr[gp]["dtype"] == "F8_E4M3"
        assert hdr[gp + "_scale_inv"]["shape"] == [o["experts"], math.ceil(o["moe_inter"] / 128),
                                                   math.ceil(o["hidden"] / 128)]
        assert hdr[pre + "model.layers.1.moe.gate.weight"]["dtype"] == "BF16"
        assert hdr[pre + "model.embed_tokens.weight"]["dtype"] == "BF16"
        assert hdr[pre + "model.norm.weight"]["dtype"] == "BF16"
        qc = json.load(open(os.path.join(d, "config.json")))["quantization_config"]
        assert qc == {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                      "weight_block_size": [128, 128]}
    if opts.get("vision"):
        assert any(k.startswith("vision_model.") for k in hdr)

    # forward: finite, O(1), causal (prefix logits unchanged by later tokens), no top-1 ties
    ids = [5, 17, 2, 99, 42, 7, 3]
    L = R.forward(cfg, W, ids)
    assert L.shape == (7, cfg["vocab_size"]) and np.all(np.isfinite(L))
    assert 0.1 < L.std() < 10
    np.testing.assert_allclose(R.forward(cfg, W, ids[:4]), L[:4], rtol=1e-10, atol=1e-12)
    assert min(R.top1_margin(r) for r in L) > 1e-4


def test_forward_single_token_manual():
    """1-layer dense model, 1 token: attention output == v, so the forward is hand-computable."""
    rng = np.random.default_rng(8)
    H, nh, hd, sq, I, V = 6, 2, 4, 5, 7, 9
    cfg = dict(hidden_size=H, num_attention_heads=nh, head_dim=hd, share_q_dim=sq, intermediate_size=I,
               vocab_size=V, num_hidden_layers=1, moe_layers_enum="", rms_norm_eps=1e-5,
               rope_theta=10000.0, rope_scaling=None, num_attention_groups=1)
    p = "model.layers.0."
    W = {"model.embed_tokens.weight": rng.standard_normal((V, H)),
         p + "input_layernorm.weight": rng.standard_normal(H),
         p + "post_attention_layernorm.weight": rng.standard_normal(H),
         p + "self_attn.q_proj.weight": rng.standard_normal((sq, H)),
         p + "self_attn.inter_norm.weight": rng.standard_normal(sq),
         p + "self_attn.wq.weight": rng.standard_normal((nh * hd, sq)),
         p + "self_attn.k_proj.weight": rng.standard_normal((hd, H)),
         p + "self_attn.v_proj.weight": rng.standard_normal((hd, H)),
         p + "self_attn.o_proj.weight": rng.standard_normal((H, nh * hd)),
         p + "mlp.gate_proj.weight": rng.standard_normal((I, H)),
         p + "mlp.up_proj.weight": rng.standard_normal((I, H)),
         p + "mlp.down_proj.weight": rng.standard_normal((H, I)),
         "model.norm.weight": rng.standard_normal(H),
         "lm_head.weight": rng.standard_normal((V, H))}
    tok = 4
    h = W["model.embed_tokens.weight"][tok]
    x = h / np.sqrt(np.mean(h ** 2) + 1e-5) * W[p + "input_layernorm.weight"]
    v = W[p + "self_attn.v_proj.weight"] @ x
    h = h + W[p + "self_attn.o_proj.weight"] @ np.concatenate([v] * nh)
    x = h / np.sqrt(np.mean(h ** 2) + 1e-5) * W[p + "post_attention_layernorm.weight"]
    g = W[p + "mlp.gate_proj.weight"] @ x
    h = h + W[p + "mlp.down_proj.weight"] @ (g / (1 + np.exp(-g)) * (W[p + "mlp.up_proj.weight"] @ x))
    y = h / np.sqrt(np.mean(h ** 2) + 1e-5) * W["model.norm.weight"]
    np.testing.assert_allclose(R.forward(cfg, W, [tok])[0], W["lm_head.weight"] @ y, rtol=1e-12)


def test_make_checkpoint_cli(tmp_path):
    script = str(HERE / "make_checkpoint.py")
    r = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--dtype" in r.stdout
    d = tmp_path / "cli"
    r = subprocess.run([sys.executable, script, "--out", str(d), "--dtype", "fp8", "--shards", "2",
                        "--nested", "--prefix", "--vision", "--hidden", "260"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    cfg, W = R.load_checkpoint(str(d))
    assert cfg["hidden_size"] == 260 and cfg["quantization_config"]["quant_method"] == "fp8"
    assert W["model.layers.0.self_attn.o_proj.weight"].shape == (260, 216)
