"""Independent reference implementation of the AFD decoding-cost model.

Written only from ../shared/reference/cost-model.md (sections 1-4, worked example in 6) and
../shared/reference/performance.md (H100/H200 vendor figures); not from the engine sources.

Everything is per decoding token at context T, summed over all layers:
  kv_bytes, attention_flops (QK + PV core), linear_flops (attention projections),
  ffn_flops, arithmetic_intensity = attention_flops / kv_bytes,
  USD per 1M tokens: attention = max(F_attn*U_flop, B_kv*U_byte) + F_lin*U_flop,
                     ffn = F_ffn*U_flop, total = attention + ffn (same hardware, "EP total").
Plus (section 3.3): min_sparsity, model sparsity S, B_dense = peak / (2 bw), B_MoE = B_dense / S.

Run `python3 cost_ref.py` for the section-6 self-test and a small table.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict, List, Optional

# --------------------------------------------------------------------------------------------
# Layer descriptions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GQA:
    """GQA / MFA softmax attention. q_lora=None -> plain GQA projections; else MFA (Step-3)."""
    n_q: int
    n_kv: int
    head_dim: int
    b_kv: float  # bytes per cached element
    q_lora: Optional[int] = None
    window: Optional[int] = None  # chunked attention: attends min(T, window) tokens

    def tokens(self, T: int) -> int:
        return T if self.window is None else min(T, self.window)

    def kv_bytes(self, H: int, T: int) -> float:
        return 2 * self.n_kv * self.head_dim * self.b_kv * self.tokens(T)

    def attention_flops(self, H: int, T: int) -> float:
        return 4 * self.n_q * self.head_dim * self.tokens(T)

    def linear_flops(self, H: int) -> float:
        d, nq, nkv = self.head_dim, self.n_q, self.n_kv
        if self.q_lora is None:  # GQA: H(nq+2nkv)d + nq d H
            w = H * (nq + 2 * nkv) * d + nq * d * H
        else:  # MFA: H q_lora + q_lora nq d + 2 H nkv d + nq d H
            w = H * self.q_lora + self.q_lora * nq * d + 2 * H * nkv * d + nq * d * H
        return 2 * w


@dataclass(frozen=True)
class MLA:
    n_heads: int
    q_lora: int
    kv_lora: int
    nope: int
    rope: int
    v: int
    b_kv: float = 1

    def kv_bytes(self, H: int, T: int) -> float:
        return (self.kv_lora + self.rope) * self.b_kv * T

    def attention_flops(self, H: int, T: int) -> float:
        # convention 3: latent+rope width for both QK and PV
        return 4 * self.n_heads * (self.kv_lora + self.rope) * T

    def linear_flops(self, H: int) -> float:
        h = self.n_heads
        # convention 4: stored (un-absorbed) weights, including kv_b_proj
        w = (H * self.q_lora + self.q_lora * h * (self.nope + self.rope)
             + H * (self.kv_lora + self.rope) + self.kv_lora * h * (self.nope + self.v)
             + h * self.v * H)
        return 2 * w


@dataclass(frozen=True)
class Lightning:
    heads: int
    head_dim: int
    b_state: float = 4  # FP32
    c: float = 10  # FLOPs per state element (convention 8)

    def kv_bytes(self, H: int, T: int) -> float:
        return self.heads * self.head_dim ** 2 * self.b_state * 2  # read + write-back

    def attention_flops(self, H: int, T: int) -> float:
        return self.c * self.heads * self.head_dim ** 2

    def linear_flops(self, H: int) -> float:
        h, d = self.heads, self.head_dim
        return 2 * (H * 3 * h * d + H * h * d + h * d * H)


@dataclass(frozen=True)
class Layer:
    attn: object
    ffn_inter: int  # I_active


@dataclass
class Model:
    name: str
    hidden: int
    layers: List[Layer]
    # sparsity data (None routed -> dense model)
    n_routed: Optional[int] = None
    top_k: Optional[int] = None
    moe_inter: Optional[int] = None
    shared_inter: int = 0

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def per_token(self, T: int) -> Dict[str, float]:
        H = self.hidden
        kv = sum(l.attn.kv_bytes(H, T) for l in self.layers)
        fa = sum(l.attn.attention_flops(H, T) for l in self.layers)
        fl = sum(l.attn.linear_flops(H) for l in self.layers)
        ff = sum(2 * 3 * H * l.ffn_inter for l in self.layers)
        return {"kv_bytes": float(kv), "attention_flops": float(fa),
                "linear_flops": float(fl), "ffn_flops": float(ff)}

    def sparsity(self) -> float:
        """S = (activated routed + shared) / (routed + shared); shared counted in units of one
        routed expert (by size: shared_inter / moe_inter). Dense model -> 1."""
        if self.n_routed is None:
            return 1.0
        shared_units = self.shared_inter / self.moe_inter
        return (self.top_k + shared_units) / (self.n_routed + shared_units)


# --------------------------------------------------------------------------------------------
# Model presets (cost-model.md section 1 + section 4 conventions)
# --------------------------------------------------------------------------------------------


def _moe_layers(L, dense_idx, dense_inter, moe_active, attn_of=lambda i: None):
    return [Layer(attn_of(i), dense_inter if i in dense_idx else moe_active) for i in range(L)]


def step3() -> Model:
    L, H = 61, 7168
    attn = GQA(n_q=64, n_kv=1, head_dim=256, b_kv=1, q_lora=2048)
    dense = set(range(0, 4)) | {60}
    layers = [Layer(attn, 18432 if i in dense else 3 * 5120 + 5120) for i in range(L)]
    return Model("step3", H, layers, n_routed=48, top_k=3, moe_inter=5120, shared_inter=5120)


def deepseek_v3() -> Model:
    L, H = 61, 7168
    attn = MLA(n_heads=128, q_lora=1536, kv_lora=512, nope=128, rope=64, v=128, b_kv=1)
    layers = [Layer(attn, 18432 if i < 3 else 8 * 2048 + 2048) for i in range(L)]
    return Model("deepseek-v3", H, layers, n_routed=256, top_k=8, moe_inter=2048,
                 shared_inter=2048)


def kimi_k2() -> Model:
    L, H = 61, 7168
    attn = MLA(n_heads=64, q_lora=1536, kv_lora=512, nope=128, rope=64, v=128, b_kv=1)
    layers = [Layer(attn, 18432 if i < 1 else 8 * 2048 + 2048) for i in range(L)]
    return Model("kimi-k2", H, layers, n_routed=384, top_k=8, moe_inter=2048, shared_inter=2048)


def qwen3_235b() -> Model:
    L, H = 94, 4096
    attn = GQA(n_q=64, n_kv=4, head_dim=128, b_kv=1)
    layers = [Layer(attn, 8 * 1536) for _ in range(L)]
    return Model("qwen3-235b-a22b", H, layers, n_routed=128, top_k=8, moe_inter=1536,
                 shared_inter=0)


def qwen3_32b() -> Model:
    L, H = 64, 5120
    attn = GQA(n_q=64, n_kv=8, head_dim=128, b_kv=1)
    return Model("qwen3-32b", H, [Layer(attn, 25600) for _ in range(L)])


def llama4_maverick() -> Model:
    L, H = 48, 5120
    chunked = GQA(n_q=40, n_kv=8, head_dim=128, b_kv=1, window=8192)
    glob = GQA(n_q=40, n_kv=8, head_dim=128, b_kv=2)
    layers = []
    for i in range(L):
        a = chunked if (i + 1) % 4 != 0 else glob
        inter = 16384 if i % 2 == 0 else 1 * 8192 + 8192
        layers.append(Layer(a, inter))
    return Model("llama4-maverick", H, layers, n_routed=128, top_k=1, moe_inter=8192,
                 shared_inter=8192)


def minimax_m1() -> Model:
    L, H = 80, 6144
    light = Lightning(heads=64, head_dim=128, b_state=4, c=10)
    soft = GQA(n_q=64, n_kv=8, head_dim=128, b_kv=2)
    layers = [Layer(soft if i % 8 == 7 else light, 2 * 9216) for i in range(L)]
    return Model("minimax-m1", H, layers, n_routed=32, top_k=2, moe_inter=9216, shared_inter=0)


def ernie45() -> Model:
    L, H = 54, 8192
    attn = GQA(n_q=64, n_kv=8, head_dim=128, b_kv=1)
    layers = [Layer(attn, 28672 if i < 3 else 8 * 3584) for i in range(L)]
    return Model("ernie4.5-300b-a47b", H, layers, n_routed=64, top_k=8, moe_inter=3584,
                 shared_inter=0)


def pangu_pro_moe() -> Model:
    L, H = 48, 5120
    attn = GQA(n_q=40, n_kv=8, head_dim=128, b_kv=1)
    layers = [Layer(attn, 8 * 1344 + 5376) for _ in range(L)]
    return Model("pangu-pro-moe", H, layers, n_routed=64, top_k=8, moe_inter=1344,
                 shared_inter=5376)


MODELS = {
    "step3": step3,
    "deepseek-v3": deepseek_v3,
    "kimi-k2": kimi_k2,
    "qwen3-235b-a22b": qwen3_235b,
    "qwen3-32b": qwen3_32b,
    "llama4-maverick": llama4_maverick,
    "minimax-m1": minimax_m1,
    "ernie4.5-300b-a47b": ernie45,
    "pangu-pro-moe": pangu_pro_moe,
}

# models with only full softmax attention over T in every layer (intensity independent of T)
PURE_FULL_ATTENTION = ["step3", "deepseek-v3", "kimi-k2", "qwen3-235b-a22b", "qwen3-32b",
                       "ernie4.5-300b-a47b", "pangu-pro-moe"]


def model(name: str) -> Model:
    return MODELS[name]()


# --------------------------------------------------------------------------------------------
# Hardware (section 2; h100/h200 from performance.md, price unknown -> None)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hardware:
    name: str
    price_per_hour: Optional[float]
    bf16_flops: float
    fp8_flops: Optional[float]
    memory_bandwidth: float
    network_bandwidth: Optional[float]

    @property
    def pricing_peak(self) -> float:
        return self.fp8_flops if self.fp8_flops is not None else self.bf16_flops

    def to_json(self) -> dict:
        return {"name": self.name, "price_per_hour": self.price_per_hour,
                "bf16_flops": self.bf16_flops, "fp8_flops": self.fp8_flops,
                "memory_bandwidth": self.memory_bandwidth,
                "network_bandwidth": self.network_bandwidth}


HARDWARE = {
    "h800": Hardware("h800", 2.0, 9.89e14, 1.98e15, 3.35e12, 400e9),  # 8 x 400 Gbps = server total, bytes/s
    "h20": Hardware("h20", 0.8, 1.48e14, 2.96e14, 4.00e12, 400e9),  # 8 x 400 Gbps = server total, bytes/s
    "a800": Hardware("a800", 0.75, 3.12e14, None, 2.00e12, 200e9),  # 8 x 200 Gbps = server total, bytes/s
    "910b": Hardware("910b", 0.67, 2.80e14, None, 1.60e12, 200e9),  # 8 x 200 Gbps = server total, bytes/s
}

# vendor figures (performance.md); price and network are the engine's own assumption
VENDOR_ONLY = {
    "h100": Hardware("h100", None, 9.89e14, 1.979e15, 3.35e12, None),
    "h200": Hardware("h200", None, 9.89e14, 1.979e15, 4.8e12, None),
}


def hardware(hw) -> Hardware:
    if isinstance(hw, Hardware):
        return hw
    if isinstance(hw, dict):
        return Hardware(**hw)
    return HARDWARE[hw] if hw in HARDWARE else VENDOR_ONLY[hw]


# --------------------------------------------------------------------------------------------
# Cost (section 3.2) and sparsity (section 3.3)
# --------------------------------------------------------------------------------------------

BUDGET_S = 11.1e-3
DEFAULT_H = 7168
DEFAULT_L = 61


def unit_costs(hw: Hardware):
    per_s = hw.price_per_hour / 3600.0
    return per_s / hw.pricing_peak, per_s / hw.memory_bandwidth


def usd_per_million(pt: Dict[str, float], hw) -> Dict[str, float]:
    hw = hardware(hw)
    u_flop, u_byte = unit_costs(hw)
    attn = max(pt["attention_flops"] * u_flop, pt["kv_bytes"] * u_byte) + pt["linear_flops"] * u_flop
    ffn = pt["ffn_flops"] * u_flop
    return {"attention": attn * 1e6, "ffn": ffn * 1e6, "total": (attn + ffn) * 1e6}


def cost(model_name, hw, T: int) -> dict:
    """The whole `afd cost --json` object, as the reference computes it."""
    m = model_name if isinstance(model_name, Model) else model(model_name)
    h = hardware(hw)
    pt = m.per_token(T)
    return {
        "model": m.name,
        "hardware": h.name,
        "context": T,
        "per_token": pt,
        "arithmetic_intensity": pt["attention_flops"] / pt["kv_bytes"],
        "usd_per_million_tokens": usd_per_million(pt, h),
    }


# convenience wrappers
def kv_bytes(m, T): return model(m).per_token(T)["kv_bytes"]
def attention_flops(m, T): return model(m).per_token(T)["attention_flops"]
def linear_flops(m, T=8192): return model(m).per_token(T)["linear_flops"]
def ffn_flops(m, T=8192): return model(m).per_token(T)["ffn_flops"]
def arithmetic_intensity(m, T): return attention_flops(m, T) / kv_bytes(m, T)


def min_sparsity(hw, hidden: int = DEFAULT_H, layers: int = DEFAULT_L) -> float:
    """S >= H * pricing_peak * L / (Net * HBM_bw * 11.1 ms)."""
    h = hardware(hw)
    return hidden * h.pricing_peak * layers / (h.network_bandwidth * h.memory_bandwidth * BUDGET_S)


def b_dense(hw) -> float:
    h = hardware(hw)
    return h.pricing_peak / (2.0 * h.memory_bandwidth)


def b_moe(hw, model_name) -> float:
    return b_dense(hw) / model(model_name).sparsity()


def sparsity_report(hw, model_name=None, hidden=DEFAULT_H, layers=DEFAULT_L) -> dict:
    out = {"min_sparsity": min_sparsity(hw, hidden, layers)}
    if model_name is not None:
        out.update({"sparsity": model(model_name).sparsity(), "b_dense": b_dense(hw),
                    "b_moe": b_moe(hw, model_name)})
    return out


# --------------------------------------------------------------------------------------------
# HF config.json fixtures (for `--model PATH` tests)
# --------------------------------------------------------------------------------------------


def hf_config_deepseek_v3() -> dict:
    return {
        "architectures": ["DeepseekV3ForCausalLM"],
        "model_type": "deepseek_v3",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "aux_loss_alpha": 0.001,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "ep_size": 1,
        "first_k_dense_replace": 3,
        "hidden_act": "silu",
        "hidden_size": 7168,
        "initializer_range": 0.02,
        "intermediate_size": 18432,
        "kv_lora_rank": 512,
        "max_position_embeddings": 163840,
        "moe_intermediate_size": 2048,
        "moe_layer_freq": 1,
        "n_group": 8,
        "n_routed_experts": 256,
        "n_shared_experts": 1,
        "norm_topk_prob": True,
        "num_attention_heads": 128,
        "num_experts_per_tok": 8,
        "num_hidden_layers": 61,
        "num_key_value_heads": 128,
        "num_nextn_predict_layers": 1,
        "q_lora_rank": 1536,
        "qk_nope_head_dim": 128,
        "qk_rope_head_dim": 64,
        "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3",
                                "quant_method": "fp8", "weight_block_size": [128, 128]},
        "rms_norm_eps": 1e-06,
        "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0,
                         "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096,
                         "type": "yarn"},
        "rope_theta": 10000,
        "routed_scaling_factor": 2.5,
        "scoring_func": "sigmoid",
        "seq_aux": True,
        "tie_word_embeddings": False,
        "topk_group": 4,
        "topk_method": "noaux_tc",
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "v_head_dim": 128,
        "vocab_size": 129280,
    }


def hf_config_qwen3_235b() -> dict:
    return {
        "architectures": ["Qwen3MoeForCausalLM"],
        "model_type": "qwen3_moe",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 151643,
        "decoder_sparse_step": 1,
        "eos_token_id": 151645,
        "head_dim": 128,
        "hidden_act": "silu",
        "hidden_size": 4096,
        "initializer_range": 0.02,
        "intermediate_size": 12288,
        "max_position_embeddings": 40960,
        "max_window_layers": 94,
        "mlp_only_layers": [],
        "moe_intermediate_size": 1536,
        "norm_topk_prob": True,
        "num_attention_heads": 64,
        "num_experts": 128,
        "num_experts_per_tok": 8,
        "num_hidden_layers": 94,
        "num_key_value_heads": 4,
        "output_router_logits": False,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 1000000.0,
        "router_aux_loss_coef": 0.001,
        "sliding_window": None,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": 151936,
    }


def hf_config_gpt2() -> dict:
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_ctx": 1024,
            "n_embd": 768, "n_head": 12, "n_layer": 12, "n_positions": 1024,
            "vocab_size": 50257}


# --------------------------------------------------------------------------------------------
# Self-test (section 6)
# --------------------------------------------------------------------------------------------

SECTION6 = {"kv_bytes": 2.56e8, "attention_flops": 3.27e10, "linear_flops": 2.07e10,
            "ffn_flops": 5.33e10, "arithmetic_intensity": 128.0}


def selftest() -> None:
    pt = model("step3").per_token(8192)
    got = dict(pt, arithmetic_intensity=pt["attention_flops"] / pt["kv_bytes"])
    for k, v in SECTION6.items():
        # the document prints 3 significant digits
        assert abs(got[k] - v) <= 0.005 * v, (k, got[k], v)
    # exact products written out in section 6
    assert pt["kv_bytes"] == 61 * 8192 * (256 + 256) * 1
    assert pt["attention_flops"] == 61 * 4 * 64 * 256 * 8192
    assert pt["linear_flops"] == 61 * 2 * (7168 * 2048 + 2048 * 16384 + 2 * 7168 * 256
                                           + 16384 * 7168)
    assert pt["ffn_flops"] == 2 * 3 * 7168 * (5 * 18432 + 56 * (3 * 5120 + 5120))
    assert got["arithmetic_intensity"] == 128.0


if __name__ == "__main__":
    selftest()
    print("section 6 self-test OK")
    for m in ("step3", "deepseek-v3"):
        print(m, json.dumps(cost(m, "h800", 8192), indent=1))
    print("%-20s" % "USD/1M @8K total", " ".join("%9s" % h for h in HARDWARE))
    for m in MODELS:
        print("%-20s" % m, " ".join("%9.4f" % cost(m, h, 8192)["usd_per_million_tokens"]["total"]
                                    for h in HARDWARE))
    for h in HARDWARE:
        print(h, "min_sparsity", min_sparsity(h), "B_dense", b_dense(h))
