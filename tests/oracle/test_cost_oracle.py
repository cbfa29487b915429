"""Drive `afd cost` and compare with the independent reference cost_ref.py (cost-model.md).

Engine binary: $AFD_BINARY (default build/afd relative to the repo root). Nothing is skipped:
a missing binary is a test failure.

CLI contract (issue 3):
  afd cost --model M --hardware HW --context N --json
    stdout: exactly one JSON object
      {"model": str, "hardware": str, "context": int,
       "per_token": {"kv_bytes", "attention_flops", "linear_flops", "ffn_flops"},
       "arithmetic_intensity": float,
       "usd_per_million_tokens": {"attention", "ffn", "total"}}
  afd cost --min-sparsity --hardware HW [--hidden H --layers L] [--model M] --json
    stdout: {"min_sparsity": x}  (+ "sparsity", "b_dense", "b_moe" with --model)
  HW: preset name (h800 h20 a800 910b h100 h200) or path of a JSON file with exactly
      {"name", "price_per_hour", "bf16_flops", "fp8_flops" (null if none), "memory_bandwidth",
       "network_bandwidth"}
  M: preset name or path of an HF config.json.
  Errors: non-zero exit, one line `afd: error: ...` on stderr naming the problem.

Tolerance: $AFD_COST_RTOL (default 1e-6), relative.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import cost_ref as R  # noqa: E402

REPO = HERE.parents[1]
_bin = os.environ.get("AFD_BINARY", "build/afd")
BINARY = Path(_bin) if os.path.isabs(_bin) else REPO / _bin
RTOL = float(os.environ.get("AFD_COST_RTOL", "1e-6"))
TIMEOUT = 60

MODELS = list(R.MODELS)
HWS = list(R.HARDWARE)  # h800 h20 a800 910b
CONTEXTS = [4096, 8192, 16384, 32768, 65536, 131072, 3000]

TOP_KEYS = {"model", "hardware", "context", "per_token", "arithmetic_intensity",
            "usd_per_million_tokens"}
PT_KEYS = {"kv_bytes", "attention_flops", "linear_flops", "ffn_flops"}
USD_KEYS = {"attention", "ffn", "total"}
HW_FIELDS = ["name", "price_per_hour", "bf16_flops", "fp8_flops", "memory_bandwidth",
             "network_bandwidth"]

L20_LIKE = {"name": "l20-like", "price_per_hour": 0.5, "bf16_flops": 1.19e14,
            "fp8_flops": 2.39e14, "memory_bandwidth": 8.64e11, "network_bandwidth": 2e11}
BF16_ONLY = {"name": "bf16-only-card", "price_per_hour": 1.1, "bf16_flops": 4.0e14,
             "fp8_flops": None, "memory_bandwidth": 2.5e12, "network_bandwidth": 3e11}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def afd():
    if not BINARY.exists() or not os.access(BINARY, os.X_OK):
        pytest.fail(f"engine binary not found or not executable: {BINARY} "
                    f"(build it, or point AFD_BINARY at it)", pytrace=False)
    return str(BINARY)


def run(afd, *args):
    p = subprocess.run([afd, *map(str, args)], capture_output=True, text=True, timeout=TIMEOUT)
    return p.returncode, p.stdout, p.stderr


def run_json(afd, *args):
    rc, out, err = run(afd, *args)
    cmd = "afd " + " ".join(map(str, args))
    assert rc == 0, f"{cmd}: exit {rc}\nstderr: {err.strip()}"
    try:
        obj = json.loads(out)
    except json.JSONDecodeError as e:
        raise AssertionError(f"{cmd}: stdout is not exactly one JSON object ({e}):\n{out[:2000]}")
    assert isinstance(obj, dict), f"{cmd}: stdout JSON is not an object: {out[:500]}"
    return obj


def cost_json(afd, model, hw, ctx):
    return run_json(afd, "cost", "--model", model, "--hardware", hw, "--context", ctx, "--json")


def rel(got, exp):
    return abs(got - exp) / max(abs(exp), 1e-300)


def flat_numbers(obj):
    """The numeric leaves of a cost object, keyed by path."""
    out = {"arithmetic_intensity": obj["arithmetic_intensity"]}
    for k in PT_KEYS:
        out["per_token." + k] = obj["per_token"][k]
    for k in USD_KEYS:
        out["usd_per_million_tokens." + k] = obj["usd_per_million_tokens"][k]
    return out


def check_shape(obj, ctx, where):
    errs = []
    if set(obj) != TOP_KEYS:
        errs.append(f"{where}: top-level keys {sorted(obj)} != {sorted(TOP_KEYS)}")
        return errs
    if not isinstance(obj["model"], str) or not isinstance(obj["hardware"], str):
        errs.append(f"{where}: model/hardware must be strings: {obj['model']!r} {obj['hardware']!r}")
    if not (isinstance(obj["context"], int) and not isinstance(obj["context"], bool)) \
            or obj["context"] != ctx:
        errs.append(f"{where}: context {obj['context']!r} != {ctx}")
    if not isinstance(obj["per_token"], dict) or set(obj["per_token"]) != PT_KEYS:
        errs.append(f"{where}: per_token keys {obj['per_token']!r}")
    if not isinstance(obj["usd_per_million_tokens"], dict) \
            or set(obj["usd_per_million_tokens"]) != USD_KEYS:
        errs.append(f"{where}: usd_per_million_tokens keys {obj['usd_per_million_tokens']!r}")
    if errs:
        return errs
    for k, v in flat_numbers(obj).items():
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            errs.append(f"{where}: {k} is not a finite number: {v!r}")
    return errs


def compare(got_obj, ref_obj, where, rtol=RTOL, keys=None):
    """-> (list of error strings, worst (rel, description))."""
    g, r = flat_numbers(got_obj), flat_numbers(ref_obj)
    errs, worst = [], (0.0, "")
    for k in (keys or r):
        e = rel(g[k], r[k])
        d = f"{where} {k}: engine {g[k]!r} ref {r[k]!r} rel {e:.3g}"
        if e > worst[0]:
            worst = (e, d)
        if e > rtol:
            errs.append(d)
    return errs, worst


def write_hw(tmp_path, spec, fname=None):
    p = tmp_path / (fname or f"{spec['name']}.json")
    p.write_text(json.dumps(spec))
    return str(p)


def report(errs, worst, n):
    print(f"compared {n} engine runs; worst relative difference: {worst[0]:.3g}  {worst[1]}")
    if errs:
        shown = "\n".join(errs[:40])
        more = f"\n... and {len(errs) - 40} more" if len(errs) > 40 else ""
        pytest.fail(f"{len(errs)} mismatches (rtol {RTOL}):\n{shown}{more}", pytrace=False)


def check_error(afd, args, must_name, what):
    rc, out, err = run(afd, *args)
    cmd = "afd " + " ".join(map(str, args))
    assert rc != 0, f"{what}: `{cmd}` exited 0 (stdout {out[:300]!r})"
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, f"{what}: `{cmd}`: expected one stderr line, got {len(lines)}:\n{err}"
    assert lines[0].startswith("afd: error:"), f"{what}: `{cmd}`: stderr {lines[0]!r} " \
                                               "does not start with 'afd: error:'"
    names = [must_name] if isinstance(must_name, str) else list(must_name)
    assert any(n.lower() in lines[0].lower() for n in names), \
        f"{what}: `{cmd}`: error line {lines[0]!r} does not name the problem ({names})"


# --------------------------------------------------------------------------------------------
# the full grid: 9 models x 4 hardware x 7 contexts
# --------------------------------------------------------------------------------------------

def test_cost_grid_against_reference(afd):
    cases = [(m, h, t) for m in MODELS for h in HWS for t in CONTEXTS]

    def one(case):
        m, h, t = case
        try:
            return case, cost_json(afd, m, h, t), None
        except AssertionError as e:
            return case, None, str(e)

    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 4)) as ex:
        results = list(ex.map(one, cases))

    errs, worst = [], (0.0, "")
    for (m, h, t), obj, err in results:
        where = f"[{m} {h} T={t}]"
        if err:
            errs.append(f"{where} {err}")
            continue
        shape = check_shape(obj, t, where)
        if shape:
            errs += shape
            continue
        e, w = compare(obj, R.cost(m, h, t), where)
        errs += e
        worst = max(worst, w)
    report(errs, worst, len(cases))


# --------------------------------------------------------------------------------------------
# h100 / h200: vendor flops/bandwidth (performance.md); price is the engine's own assumption
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("hw", ["h100", "h200"])
def test_vendor_presets_consistent(afd, hw):
    ref_hw = R.VENDOR_ONLY[hw]
    errs, worst, prices, n = [], (0.0, ""), [], 0
    for m in MODELS:
        for t in (3000, 8192, 131072):
            where = f"[{m} {hw} T={t}]"
            obj = cost_json(afd, m, hw, t)
            n += 1
            shape = check_shape(obj, t, where)
            if shape:
                errs += shape
                continue
            # hardware-independent quantities
            ref = R.cost(m, "h800", t)
            e, w = compare(obj, ref, where, keys=["per_token." + k for k in PT_KEYS]
                           + ["arithmetic_intensity"])
            errs += e
            worst = max(worst, w)
            # infer the price from the FFN cost (FLOP_FFN * price/3600/peak * 1e6), then the
            # attention cost and the total must follow with the vendor peak and bandwidth
            usd = obj["usd_per_million_tokens"]
            price = usd["ffn"] / 1e6 * 3600 * ref_hw.pricing_peak / obj["per_token"]["ffn_flops"]
            prices.append(price)
            hw_p = R.Hardware(hw, price, ref_hw.bf16_flops, ref_hw.fp8_flops,
                              ref_hw.memory_bandwidth, None)
            e, w = compare(obj, R.cost(m, hw_p, t), where,
                           keys=["usd_per_million_tokens.attention", "usd_per_million_tokens.total"])
            errs += e
            worst = max(worst, w)
    if prices and (max(prices) - min(prices)) > RTOL * max(prices):
        errs.append(f"{hw}: implied price per hour not constant across runs: "
                    f"{min(prices)!r} .. {max(prices)!r}")
    print(f"{hw}: implied price per card-hour {prices[0] if prices else None!r}")
    report(errs, worst, n)


# --------------------------------------------------------------------------------------------
# custom hardware JSON
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("preset", ["h800", "a800"])
def test_custom_json_identical_to_preset(afd, tmp_path, preset):
    spec = dict(R.HARDWARE[preset].to_json(), name=f"my-{preset}")
    assert list(spec) == HW_FIELDS
    path = write_hw(tmp_path, spec)
    errs, worst, n = [], (0.0, ""), 0
    for m in MODELS:
        for t in (3000, 32768):
            a = cost_json(afd, m, preset, t)
            b = cost_json(afd, m, path, t)
            n += 2
            where = f"[{m} {preset} vs custom JSON, T={t}]"
            errs += check_shape(b, t, where)
            e, w = compare(b, a, where, rtol=1e-12)
            errs += e
            worst = max(worst, w)
    a = run_json(afd, "cost", "--min-sparsity", "--hardware", preset, "--json")
    b = run_json(afd, "cost", "--min-sparsity", "--hardware", path, "--json")
    if set(a) != {"min_sparsity"} or set(b) != {"min_sparsity"} \
            or not rel(b["min_sparsity"], a["min_sparsity"]) <= 1e-12:
        errs.append(f"min_sparsity: preset {a} custom {b}")
    report(errs, worst, n)


@pytest.mark.parametrize("spec", [L20_LIKE, BF16_ONLY], ids=["l20-like", "fp8-null"])
def test_custom_json_against_reference(afd, tmp_path, spec):
    path = write_hw(tmp_path, spec)
    errs, worst, n = [], (0.0, ""), 0
    for m in MODELS:
        for t in (3000, 8192, 65536):
            where = f"[{m} {spec['name']} T={t}]"
            obj = cost_json(afd, m, path, t)
            n += 1
            shape = check_shape(obj, t, where)
            if shape:
                errs += shape
                continue
            e, w = compare(obj, R.cost(m, spec, t), where)
            errs += e
            worst = max(worst, w)
    ms = run_json(afd, "cost", "--min-sparsity", "--hardware", path, "--json")
    want = R.min_sparsity(spec)
    if set(ms) != {"min_sparsity"} or rel(ms["min_sparsity"], want) > RTOL:
        errs.append(f"min-sparsity {spec['name']}: engine {ms} ref {want!r}")
    report(errs, worst, n)


def test_fp8_null_prices_with_bf16_peak(afd, tmp_path):
    """Same card with and without an FP8 peak: FLOP-priced costs scale by bf16/fp8."""
    with_fp8 = dict(BF16_ONLY, name="with-fp8", fp8_flops=8.0e14)
    p_null, p_fp8 = write_hw(tmp_path, BF16_ONLY), write_hw(tmp_path, with_fp8)
    a = cost_json(afd, "step3", p_null, 8192)["usd_per_million_tokens"]["ffn"]
    b = cost_json(afd, "step3", p_fp8, 8192)["usd_per_million_tokens"]["ffn"]
    assert rel(a / b, 8.0e14 / 4.0e14) <= RTOL, (a, b)
    assert rel(a, R.cost("step3", BF16_ONLY, 8192)["usd_per_million_tokens"]["ffn"]) <= RTOL


# --------------------------------------------------------------------------------------------
# min sparsity, B_dense, B_MoE
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("hw", HWS)
def test_min_sparsity(afd, hw):
    obj = run_json(afd, "cost", "--min-sparsity", "--hardware", hw, "--json")
    assert set(obj) == {"min_sparsity"}, obj
    want = R.min_sparsity(hw)
    assert rel(obj["min_sparsity"], want) <= RTOL, (hw, obj, want)
    obj = run_json(afd, "cost", "--min-sparsity", "--hardware", hw, "--hidden", 4096,
                   "--layers", 94, "--json")
    want = R.min_sparsity(hw, 4096, 94)
    assert set(obj) == {"min_sparsity"}, obj
    assert rel(obj["min_sparsity"], want) <= RTOL, (hw, "H=4096 L=94", obj, want)


def test_min_sparsity_with_model(afd):
    errs, worst, n = [], (0.0, ""), 0
    for hw in HWS:
        for m in MODELS:
            args = ["cost", "--min-sparsity", "--hardware", hw, "--model", m, "--json"]
            where = f"[--min-sparsity {m} {hw}]"
            if m == "qwen3-32b":
                # dense model: S = 1 (B_MoE = B_dense), or a clear error -- both accepted
                rc, out, err = run(afd, *args)
                if rc != 0:
                    if not err.strip().startswith("afd: error:"):
                        errs.append(f"{where}: exit {rc} without 'afd: error:' ({err.strip()!r})")
                    continue
            obj = run_json(afd, *args)
            n += 1
            if set(obj) != {"min_sparsity", "sparsity", "b_dense", "b_moe"}:
                errs.append(f"{where}: keys {sorted(obj)}")
                continue
            mod = R.model(m)
            # min_sparsity: the paper defaults (H 7168, L 61), or the model's own H and L
            cands = [R.min_sparsity(hw), R.min_sparsity(hw, mod.hidden, mod.num_layers)]
            e = min(rel(obj["min_sparsity"], c) for c in cands)
            if e > RTOL:
                errs.append(f"{where} min_sparsity: engine {obj['min_sparsity']!r} "
                            f"ref (defaults / model H,L) {cands}")
            ref = {"sparsity": mod.sparsity(), "b_dense": R.b_dense(hw), "b_moe": R.b_moe(hw, m)}
            for k, v in ref.items():
                e = rel(obj[k], v)
                d = f"{where} {k}: engine {obj[k]!r} ref {v!r} rel {e:.3g}"
                worst = max(worst, (e, d))
                if e > RTOL:
                    if m == "pangu-pro-moe" and k != "b_dense":
                        d += " (ref counts Pangu's 5376-wide shared MLP as 4 routed-expert units)"
                    errs.append(d)
    report(errs, worst, n)


# --------------------------------------------------------------------------------------------
# HF config.json by path
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("preset,make", [("deepseek-v3", R.hf_config_deepseek_v3),
                                         ("qwen3-235b-a22b", R.hf_config_qwen3_235b)])
def test_hf_config_by_path(afd, tmp_path, preset, make):
    d = tmp_path / preset
    d.mkdir()
    cfg = d / "config.json"
    cfg.write_text(json.dumps(make(), indent=2))
    errs, worst, n = [], (0.0, ""), 0
    for hw in ("h800", "910b"):
        for t in (3000, 8192, 131072):
            where = f"[{cfg.name} ({preset}) {hw} T={t}]"
            obj = cost_json(afd, str(cfg), hw, t)
            n += 1
            shape = check_shape(obj, t, where)
            if shape:
                errs += shape
                continue
            e, w = compare(obj, R.cost(preset, hw, t), where)
            errs += e
            worst = max(worst, w)
    report(errs, worst, n)


def test_hf_config_unsupported_family(afd, tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(R.hf_config_gpt2()))
    check_error(afd, ["cost", "--model", str(cfg), "--hardware", "h800", "--context", 8192,
                      "--json"], "gpt2", "unsupported model_type")


# --------------------------------------------------------------------------------------------
# bad inputs
# --------------------------------------------------------------------------------------------

def test_unknown_model(afd):
    check_error(afd, ["cost", "--model", "no-such-model-7b", "--hardware", "h800",
                      "--context", 8192, "--json"], "no-such-model-7b", "unknown model")


def test_unknown_hardware(afd):
    check_error(afd, ["cost", "--model", "step3", "--hardware", "h9000x", "--context", 8192,
                      "--json"], "h9000x", "unknown hardware")
    check_error(afd, ["cost", "--min-sparsity", "--hardware", "h9000x", "--json"], "h9000x",
                "unknown hardware (min-sparsity)")


def test_malformed_hardware_json(afd, tmp_path):
    p = tmp_path / "broken_hw.json"
    p.write_text('{"name": "x", "price_per_hour": 1.0, "bf16_flops": 1e14,,')
    check_error(afd, ["cost", "--model", "step3", "--hardware", str(p), "--context", 8192,
                      "--json"], ["broken_hw.json", "json", "pars"], "malformed hardware JSON")


@pytest.mark.parametrize("missing", HW_FIELDS)
def test_hardware_json_missing_field(afd, tmp_path, missing):
    spec = {k: v for k, v in L20_LIKE.items() if k != missing}
    p = write_hw(tmp_path, spec, f"missing_{missing}.json")
    check_error(afd, ["cost", "--model", "step3", "--hardware", p, "--context", 8192, "--json"],
                missing, f"hardware JSON missing {missing}")
