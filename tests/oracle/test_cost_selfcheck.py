"""Self-checks of the cost-model reference (cost_ref.py); no engine needed."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cost_ref as R  # noqa: E402

CONTEXTS = [3000, 4096, 8192, 16384, 32768, 65536, 131072]


def test_section6_step3_8k():
    R.selftest()
    pt = R.model("step3").per_token(8192)
    assert f"{pt['kv_bytes']:.3g}" == "2.56e+08"
    assert f"{pt['attention_flops']:.3g}" == "3.27e+10"
    assert f"{pt['linear_flops']:.3g}" == "2.07e+10"
    assert f"{pt['ffn_flops']:.3g}" == "5.33e+10"
    assert R.arithmetic_intensity("step3", 8192) == 128.0


def test_presets_complete():
    assert sorted(R.MODELS) == sorted([
        "step3", "deepseek-v3", "kimi-k2", "qwen3-235b-a22b", "qwen3-32b", "llama4-maverick",
        "minimax-m1", "ernie4.5-300b-a47b", "pangu-pro-moe"])
    layers = {"step3": 61, "deepseek-v3": 61, "kimi-k2": 61, "qwen3-235b-a22b": 94,
              "qwen3-32b": 64, "llama4-maverick": 48, "minimax-m1": 80,
              "ernie4.5-300b-a47b": 54, "pangu-pro-moe": 48}
    for m, L in layers.items():
        assert R.model(m).num_layers == L, m


@pytest.mark.parametrize("hw", list(R.HARDWARE))
def test_cost_grows_with_context(hw):
    for m in R.MODELS:
        tot = [R.cost(m, hw, T)["usd_per_million_tokens"]["total"] for T in sorted(CONTEXTS)]
        assert all(b > a for a, b in zip(tot, tot[1:])), (m, hw, tot)
        kv = [R.kv_bytes(m, T) for T in sorted(CONTEXTS)]
        assert all(b > a for a, b in zip(kv, kv[1:])), (m, kv)


def test_intensity_independent_of_context_for_full_attention():
    for m in R.PURE_FULL_ATTENTION:
        vals = {R.arithmetic_intensity(m, T) for T in CONTEXTS}
        assert len(vals) == 1, (m, vals)
    # GQA: 4 nq d T / (2 nkv d b T) = 2 nq / (nkv b)
    assert R.arithmetic_intensity("qwen3-235b-a22b", 5000) == 2 * 64 / 4
    assert R.arithmetic_intensity("qwen3-32b", 5000) == 2 * 64 / 8
    # MLA: 4 h (latent+rope) T / ((latent+rope) T) = 4 h
    assert R.arithmetic_intensity("deepseek-v3", 5000) == 4 * 128
    assert R.arithmetic_intensity("kimi-k2", 5000) == 4 * 64
    # hybrids do depend on T
    assert R.arithmetic_intensity("minimax-m1", 4096) != R.arithmetic_intensity("minimax-m1", 65536)
    assert R.arithmetic_intensity("llama4-maverick", 4096) != R.arithmetic_intensity(
        "llama4-maverick", 65536)


def test_minimax_lightning_bytes_independent_of_T():
    m = R.model("minimax-m1")
    light = [l for l in m.layers if isinstance(l.attn, R.Lightning)]
    soft = [i for i, l in enumerate(m.layers) if isinstance(l.attn, R.GQA)]
    assert len(light) == 70 and soft == list(range(7, 80, 8))
    for l in light:
        vals = {l.attn.kv_bytes(6144, T) for T in CONTEXTS}
        assert vals == {64 * 128 * 128 * 4 * 2}
        assert {l.attn.attention_flops(6144, T) for T in CONTEXTS} == {10 * 64 * 128 * 128}
    # total bytes = 70 * state*2 + 10 * BF16 GQA KV
    for T in CONTEXTS:
        assert R.kv_bytes("minimax-m1", T) == 70 * 64 * 128 * 128 * 4 * 2 + 10 * 2 * 8 * 128 * 2 * T
        assert R.attention_flops("minimax-m1", T) == 70 * 10 * 64 * 128 ** 2 + 10 * 4 * 64 * 128 * T
    # lightning linear flops per layer: 2*(H*3hd + H*hd + hd*H) = 2 * 5 * H * h * d
    assert light[0].attn.linear_flops(6144) == 2 * 5 * 6144 * 64 * 128


def test_gqa_single_layer_by_hand():
    # Qwen3-32B layer: H 5120, 64 q / 8 kv heads x 128, FP8 KV, T = 1000
    a = R.model("qwen3-32b").layers[0].attn
    assert a.kv_bytes(5120, 1000) == 2_048_000          # 2*8*128*1*1000
    assert a.attention_flops(5120, 1000) == 32_768_000  # 4*64*128*1000
    # 2*(5120*(64+16)*128 + 64*128*5120) = 2*(52,428,800 + 41,943,040)
    assert a.linear_flops(5120) == 188_743_680
    pt = R.model("qwen3-32b").per_token(1000)
    assert pt["kv_bytes"] == 64 * 2_048_000
    assert pt["ffn_flops"] == 64 * 6 * 5120 * 25600


def test_mla_single_layer_by_hand():
    # DeepSeek-V3 layer: H 7168, 128 heads, q_lora 1536, kv_lora 512, nope 128, rope 64, v 128
    a = R.model("deepseek-v3").layers[0].attn
    assert a.kv_bytes(7168, 1000) == 576_000             # (512+64)*1*1000
    assert a.attention_flops(7168, 1000) == 294_912_000  # 4*128*576*1000
    # 7168*1536 + 1536*128*192 + 7168*576 + 512*128*256 + 128*128*7168
    # = 11,010,048 + 37,748,736 + 4,128,768 + 16,777,216 + 117,440,512 = 187,105,280
    assert a.linear_flops(7168) == 374_210_560
    # FFN: 3 dense layers (18432) + 58 MoE (8*2048 + 2048)
    assert R.ffn_flops("deepseek-v3") == 6 * 7168 * (3 * 18432 + 58 * 9 * 2048)


def test_llama4_layout():
    m = R.model("llama4-maverick")
    glob = [i for i, l in enumerate(m.layers) if l.attn.window is None]
    assert glob == list(range(3, 48, 4)) and len(glob) == 12
    assert sum(1 for l in m.layers if l.attn.window == 8192) == 36
    assert [l.ffn_inter for l in m.layers[:4]] == [16384, 16384, 16384, 16384]
    # chunked layers saturate at 8192: bytes beyond 8K only grow in the 12 global layers (BF16)
    d = R.kv_bytes("llama4-maverick", 16384) - R.kv_bytes("llama4-maverick", 8192)
    assert d == 12 * 2 * 8 * 128 * 2 * 8192
    # below 8K, chunked layers attend all T
    assert R.kv_bytes("llama4-maverick", 3000) == (36 * 1 + 12 * 2) * 2 * 8 * 128 * 3000
    assert R.attention_flops("llama4-maverick", 3000) == 48 * 4 * 40 * 128 * 3000


def test_usd_formula_and_unit_costs():
    hw = R.HARDWARE["h800"]
    pt = R.model("step3").per_token(8192)
    u_flop = 2.0 / 3600 / 1.98e15
    u_byte = 2.0 / 3600 / 3.35e12
    attn = max(pt["attention_flops"] * u_flop, pt["kv_bytes"] * u_byte) + pt["linear_flops"] * u_flop
    usd = R.usd_per_million(pt, hw)
    assert math.isclose(usd["attention"], attn * 1e6, rel_tol=1e-12)
    assert math.isclose(usd["ffn"], pt["ffn_flops"] * u_flop * 1e6, rel_tol=1e-12)
    assert math.isclose(usd["total"], usd["attention"] + usd["ffn"], rel_tol=1e-12)
    # Step-3 at 128 FLOP/B is memory-bound on H800 (ridge 591)
    assert pt["kv_bytes"] * u_byte > pt["attention_flops"] * u_flop


def test_pricing_peak():
    assert R.HARDWARE["h800"].pricing_peak == 1.98e15
    assert R.HARDWARE["h20"].pricing_peak == 2.96e14
    assert R.HARDWARE["a800"].pricing_peak == 3.12e14
    assert R.HARDWARE["910b"].pricing_peak == 2.80e14


def test_sparsity_and_batches():
    # paper's rounded min-sparsity values (Table 6 prints 3 decimals)
    expect = {"h800": 0.058, "h20": 0.007, "a800": 0.031, "910b": 0.034}
    for h, v in expect.items():
        assert round(R.min_sparsity(h), 3) == v, (h, R.min_sparsity(h))
    assert math.isclose(R.min_sparsity("h800"),
                        7168 * 1.98e15 * 61 / (400e9 * 3.35e12 * 11.1e-3), rel_tol=1e-12)
    assert R.b_dense("h20") == 37.0 and R.b_dense("a800") == 78.0
    assert math.isclose(R.model("deepseek-v3").sparsity(), 9 / 257)
    assert math.isclose(R.model("step3").sparsity(), 4 / 49)
    assert math.isclose(R.model("minimax-m1").sparsity(), 2 / 32)
    assert math.isclose(R.model("llama4-maverick").sparsity(), 2 / 129)
    assert math.isclose(R.model("pangu-pro-moe").sparsity(), 12 / 68)  # shared = 4 x 1344
    assert R.model("qwen3-32b").sparsity() == 1.0
    assert math.isclose(R.b_moe("h800", "deepseek-v3"), R.b_dense("h800") * 257 / 9)
