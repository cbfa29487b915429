"""Drive `afd tokenize` / `afd detokenize` and compare with Hugging Face `tokenizers` (PyPI).

The oracle is the `tokenizers` library itself, run on the same tokenizer.json; BOS follows
transformers' LlamaTokenizerFast rule (tokenizer_config.json add_bos_token / bos_token), which
`tokenizers` alone does not apply. Engine binary: $AFD_BINARY (default build/afd relative to
the repo root); shared data: $AFD_SOURCE_DIR/../shared/data. Nothing is skipped: a missing
binary or tokenizer is a test failure that says what is missing.

CLI contract (docs/tokenizer.md):
  afd tokenize --tokenizer DIR --jsonl F [--no-bos]  one JSON array of ids per input line
  afd tokenize --tokenizer DIR --text T --json [--no-bos]  {"ids": [...]}
  afd detokenize --tokenizer DIR --jsonl F [--keep-special]  {"text", "pieces"} per line
  Errors: non-zero exit, one line `afd: error: ...` on stderr.

The corpus (several hundred texts: English, Chinese, Japanese, Korean, code, digit runs, emoji
with ZWJ sequences, whitespace runs, special tokens inside text, mixed scripts, control
characters, the empty string) is generated deterministically below and sent in one batch.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path

import pytest
from tokenizers import Tokenizer

REPO = Path(__file__).resolve().parents[1].parent
_bin = os.environ.get("AFD_BINARY", "build/afd")
BINARY = Path(_bin) if os.path.isabs(_bin) else REPO / _bin
SOURCE = Path(os.environ.get("AFD_SOURCE_DIR", str(REPO)))
DEEPSEEK = SOURCE.parent / "shared" / "data" / "tokenizers" / "deepseek-v3"
SMALL = REPO / "tests" / "data" / "tokenizer-small"
SMALL_GPT2 = REPO / "tests" / "data" / "tokenizer-small-gpt2"
TOKENIZERS = {"deepseek-v3": DEEPSEEK, "small": SMALL, "small-gpt2": SMALL_GPT2}
TIMEOUT = 120

ENGLISH = [
    "Hello, world!", "The quick brown fox jumps over the lazy dog.",
    "It's a truth universally acknowledged, isn't it? We'll see; they'd know.",
    "Mr. O'Neil paid $1,234.56 (USD) on 2024-03-07 at 10:45pm -- 15% off!",
    "e-mail: someone@example.com, URL: https://example.org/a/b?c=d&e=f#g",
    "ALL CAPS and camelCase and snake_case and kebab-case and PascalCase",
    "  leading spaces", "trailing spaces   ", "  both  ", "a", " ", "Z",
    "Don't stop... wait!!! Really?! (yes) [no] {maybe} <tag/>",
]
CHINESE = [
    "你好，世界！", "我们今天去北京天安门广场看升旗仪式。", "深度求索是一家人工智能公司",
    "这是一个测试：数字123和英文ABC混合。", "《红楼梦》是中国古典四大名著之一。",
    "龥龦鿿𠀀𪚥", "中文标点，。！？；：“”‘’（）【】",
]
JAPANESE = [
    "こんにちは、世界！", "カタカナとひらがなと漢字。", "ｶﾀｶﾅ半角", "東京タワーへ行きました。",
    "ゔゕゖ゙゚゛゜ゝゞゟ゠ヿ", "日本語の文章です。テストをしています。",
]
KOREAN = ["안녕하세요, 세계!", "한국어 문장입니다. 테스트 중입니다.", "ᄀᄁᄂ 조합형 한글"]
CODE = [
    "def f(x):\n    return x**2 + 1  # square\n",
    "int main() {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
    '{"key": [1, 2.5, -3e10, null, true], "nested": {"a": "b"}}',
    "<div class=\"x\">&nbsp;&lt;p&gt;</div>\r\n",
    "for (auto& [k, v] : m) std::cout << k << '=' << v << std::endl;",
    "SELECT * FROM users WHERE id >= 10 AND name LIKE '%bob%';",
    "x = lambda a, *args, **kw: (a, args, kw)\nprint(x(1))",
    "#include <vector>\n#define MAX(a,b) ((a)>(b)?(a):(b))\n",
    "    if (a != b && c <= d || !e) { return; }",
    "$ ls -la | grep '^d' > /dev/null 2>&1 && echo ok",
]
DIGITS = [
    "1", "12", "123", "1234", "12345", "123456789012345678901234567890",
    "3.14159265358979323846264338327950288419716939937510", "1,000,000 and 1 000 000",
    "٠١٢٣٤٥٦٧٨٩ Arabic-Indic", "０１２３４５ fullwidth", "x²+y³=z¹⁰", "Ⅻ Ⅳ ⅷ roman",
    "①②③ circled", "0x1F600 0b1010 0o777 1e-9", "2024年3月7日", "v1.2.3-rc.4+build.5",
]
EMOJI = [
    "😀", "👍🏽", "👨\u200d👩\u200d👧\u200d👦 family", "🏳️\u200d🌈", "🇺🇸🇯🇵🇨🇳", "1️⃣2️⃣#️⃣",
    "I ❤️ NY", "🧑🏾\u200d🚀 astronaut", "☕️☀️⛄", "text😀text😀😀 😀", "🫠🫡🥹",
]
WHITESPACE = [
    "a  b", "a   b", "a\tb", "a\t\tb", "a\nb", "a\n\nb", "a\r\nb", "a\r\n\r\nb", " \n ",
    "\n", "\n\n\n", "\t", "    ", "a \n b", "x\u00a0y", "x\u3000y", "x\u2028y", "x\u2029y",
    "x\u0085y", "x\u000by\u000cz", "x\u001cy\u001dz\u001ew\u001fv", "x\u200by", "x\u2003\u2009y",
    "end with newline\n", "  \t \n \r\n  x", "\r", "\r\r\n\n\r", "a \r\n", "   \n\n   ",
]
SPECIAL = [
    "<｜begin▁of▁sentence｜>Hello", "Hi<｜end▁of▁sentence｜>", "<｜User｜>question<｜Assistant｜>",
    "a <｜User｜> b", "<｜User｜><｜User｜>", "<<｜User｜>>", "<｜User", "User｜>", "<|EOT|>",
    "x<|EOT|>y", "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f",
    "<｜fim▁begin｜>def f():<｜fim▁hole｜>\n<｜fim▁end｜>", "<｜▁pad▁｜>", "<|BOT|>user\nhi",
    "<｜place▁holder▁no▁0｜> <｜place▁holder▁no▁799｜>", "<｜begin▁of▁sentence｜>",
    "  <｜User｜>  ", "\n<｜Assistant｜>\n",
]
MIXED = [
    "Привет, мир! Ελληνικά. עברית. العربية.", "हिन्दी में लिखा है। क्षत्रिय",
    "ภาษาไทย ไม่มีช่องว่าง", "café naïve résumé", "e\u0301 a\u0300 n\u0303 combining",
    "\u0301\u0301 leading marks", "Ångström ﬁ ligature ß ẞ", "English中文日本語한국어mixed",
    "tiếng Việt có dấu", "ქართული ენა", "Հայերեն", "ᚠᛇᚻ runes", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙",
    "™©®°±×÷∑∏√∞≠≤≥", "←↑→↓⇒⇔", "«guillemets» „quotes“ ‚single‘", "¿Qué? ¡Sí!",
    "\x00\x01\x02\x7f control", "tab\tand\x08backspace", "\ufeffBOM at start", "\ufffd replacement",
    "a\u200db zwj", "\U0001F3FB alone modifier", "\U000E0041 tag char", "\uE000 private use",
    # Characters new in Unicode 15.0-16.0 (HF's Oniguruma knows 16.0; so does afd's table).
    "🩷🫨🪿 new emoji", " \U00031350x ext-H", " \U0002EBF0x ext-I", " \U00010D50x garay",
    " \U000105C0x todhri", "\U00011F04\U00011F05 kawi",
]
POOLS = [ENGLISH, CHINESE, JAPANESE, KOREAN, CODE, DIGITS, EMOJI, WHITESPACE, SPECIAL, MIXED]
# Single characters by class, for random strings that probe the regex edges (marks after spaces,
# CJK range ends, White_Space vs not, digits of other scripts, pieces of special tokens).
CHAR_POOLS = [
    [chr(c) for c in range(0x20, 0x7F)],
    list(" \t\n\r\x0b\x0c\x85\xa0\u1680\u2000\u2005\u200a\u2028\u2029\u202f\u205f\u3000"
         "\x1c\x1d\u200b\ufeff"),
    [chr(c) for c in range(0x300, 0x370)] + ["\u0903", "\u093e", "\u20dd", "\u0488"],
    [chr(c) for c in range(0x4E00, 0x4E40)] + ["\u9fa5", "\u9fa6", "\u3040", "\u309f", "\u30a0",
                                              "\u30ff", "\u3100", "\u3005", "\u3007", "\uff66"],
    [chr(c) for c in range(0x1F600, 0x1F610)] + ["\u200d", "\ufe0f", "\U0001F3FD", "\u2764",
                                                "\u20e3"],
    list("0123456789") + ["\u0660", "\u06f5", "\u0966", "\uff10", "\u00b2", "\u2160", "\u2460",
                          "\U0001D7CE"],
    list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + ["\u00a1", "\u00bf", "\u2014", "\u2018",
                                                 "\u201c", "\u3001", "\u3002", "\uff0c", "\u00a9",
                                                 "\u20ac", "\u2190", "\u221e", "\u00b4", "\u02c6"],
    [chr(c) for c in range(0x400, 0x450)] + [chr(c) for c in range(0xAC00, 0xAC10)] +
    [chr(c) for c in range(0x600, 0x620)] + ["\u01c5", "\u02b0", "\u1e9e"],
    ["<｜User｜>", "<｜Assistant｜>", "<|EOT|>", "<｜begin▁of▁sentence｜>", "<｜", "｜>", "▁",
     "<|", "|>", "<|user|>", "<|bos|>"],
    ["\x00", "\x01", "\x7f", "\x9f", "\ue000", "\U000f0000", "\U000E0001", "\U0010FFFF"],
]
GLUE = ["", " ", "  ", "\n", "\t", "\r\n", ", ", "。", "-", "'", "\u00a0"]


def corpus() -> list[str]:
    """Every hand-written text, then random concatenations of them (seeded, so stable)."""
    texts = [""]
    for pool in POOLS:
        texts.extend(pool)
    rng = random.Random(7)
    for _ in range(400):
        parts = [rng.choice(rng.choice(POOLS)) for _ in range(rng.randint(2, 5))]
        text = ""
        for p in parts:
            text += p + rng.choice(GLUE)
        if rng.random() < 0.2:  # chop at a random character boundary
            text = text[: rng.randint(0, len(text))]
        texts.append(text)
    for n in (1, 2, 3, 4, 5, 7, 100, 1000):  # long runs
        texts.append("7" * n)
        texts.append(" " * n + "x")
        texts.append("\n" * n)
        texts.append("ab" * n)
    texts.append("The quick brown fox. " * 200)
    for _ in range(600):  # random strings of single characters from the class pools
        text = ""
        for _ in range(rng.randint(1, 30)):
            c = rng.choice(rng.choice(CHAR_POOLS))
            text += c * (rng.randint(2, 4) if rng.random() < 0.2 else 1)
        texts.append(text)
    return texts


def run_afd(args: list[str], **kw) -> subprocess.CompletedProcess:
    if not BINARY.exists():
        pytest.fail(f"afd binary not found at {BINARY}: build it or set AFD_BINARY")
    return subprocess.run([str(BINARY), *args], capture_output=True, timeout=TIMEOUT, **kw)


def need(path: Path) -> Path:
    if not (path / "tokenizer.json").exists():
        pytest.fail(f"tokenizer data missing: {path}/tokenizer.json (the tests need the shared "
                    f"data beside the repo, ../shared/data, or tests/data)")
    return path


def hf_ids(path: Path, hf: Tokenizer, text: str) -> list[int]:
    """HF's ids with special tokens: transformers' LlamaTokenizerFast rule (BOS when the
    tokenizer_config.json says add_bos_token) when there is a config, otherwise the
    tokenizer.json post-processor."""
    cfg_path = path / "tokenizer_config.json"
    if not cfg_path.exists():
        return hf.encode(text, add_special_tokens=True).ids
    cfg = json.loads(cfg_path.read_text())
    bos = cfg.get("bos_token")
    if isinstance(bos, dict):
        bos = bos["content"]
    prefix = [hf.token_to_id(bos)] if cfg.get("add_bos_token") and bos else []
    return prefix + hf.encode(text, add_special_tokens=False).ids


def jsonl(tmp_path: Path, name: str, rows) -> Path:
    p = tmp_path / name
    with p.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return p


def afd_batch(args: list[str]) -> list:
    r = run_afd(args)
    assert r.returncode == 0, r.stderr.decode()
    # split("\n"), not splitlines(): decoded texts hold U+2028 or U+0085, which splitlines()
    # would also cut at (JSON escapes only the control characters).
    return [json.loads(line) for line in r.stdout.decode("utf-8").split("\n") if line]


@pytest.fixture(params=list(TOKENIZERS))
def tok(request):
    path = need(TOKENIZERS[request.param])
    return path, Tokenizer.from_file(str(path / "tokenizer.json"))


def test_encode_matches_hf(tok, tmp_path):
    path, hf = tok
    texts = corpus()
    assert len(texts) >= 1000
    got = afd_batch(["tokenize", "--tokenizer", str(path), "--jsonl",
                     str(jsonl(tmp_path, "in.jsonl", texts))])
    assert len(got) == len(texts)
    bad = []
    for text, ids in zip(texts, got):
        want = hf_ids(path, hf, text)
        if ids != want:
            bad.append((text, ids, want))
    assert not bad, f"{len(bad)} of {len(texts)} texts differ; first: {bad[0]!r}"


def test_no_bos_and_single_text(tok):
    path, hf = tok
    for text in ["Hello, world!", "", "你好 <｜User｜> 12345"]:
        want = hf.encode(text, add_special_tokens=False).ids
        r = run_afd(["tokenize", "--tokenizer", str(path), "--text", text, "--json", "--no-bos"])
        assert r.returncode == 0, r.stderr.decode()
        assert json.loads(r.stdout)["ids"] == want
        r = run_afd(["tokenize", "--tokenizer", str(path / "tokenizer.json"), "--text", text])
        assert r.returncode == 0, r.stderr.decode()
        line = r.stdout.decode().strip()
        assert [int(x) for x in line.split(",") if x] == hf_ids(path, hf, text)


def test_decode_matches_hf(tok, tmp_path):
    """Decode of HF's ids, of random ids (broken UTF-8 included) and round trips."""
    path, hf = tok
    texts = corpus()
    id_lists = [hf.encode(t, add_special_tokens=False).ids for t in texts]
    rng = random.Random(11)
    vocab = hf.get_vocab_size(with_added_tokens=True)
    for _ in range(300):
        id_lists.append([rng.randrange(vocab) for _ in range(rng.randint(1, 12))])
    # Byte tokens that split multi-byte characters: the lossy decode must match HF's.
    byte_ids = [hf.token_to_id(c) for c in ["Ã", "¤", "½", "ä", "½", "ł", "ð", "Ł", "ĺ", "Ģ"]]
    byte_ids = [i for i in byte_ids if i is not None]
    for _ in range(100):
        id_lists.append([rng.choice(byte_ids) for _ in range(rng.randint(1, 8))])
    f = jsonl(tmp_path, "ids.jsonl", id_lists)
    for keep in (False, True):
        args = ["detokenize", "--tokenizer", str(path), "--jsonl", str(f)]
        got = afd_batch(args + (["--keep-special"] if keep else []))
        assert len(got) == len(id_lists)
        bad = []
        for ids, g in zip(id_lists, got):
            want = hf.decode(ids, skip_special_tokens=not keep)
            if g["text"] != want or "".join(g["pieces"]) != want:
                bad.append((ids, g, want))
        assert not bad, f"keep_special={keep}: {len(bad)} differ; first: {bad[0]!r}"
        # Streaming never invents a replacement character that the full decode lacks.
        for g in got:
            assert sum(p.count("\ufffd") for p in g["pieces"]) == g["text"].count("\ufffd")
    # Round trip: the text of the ids of a text is the text (special tokens kept).
    got = afd_batch(["detokenize", "--tokenizer", str(path), "--jsonl", str(f), "--keep-special"])
    for text, g in zip(texts, got):
        assert g["text"] == text


def test_chat_prompt_tokenizes_like_hf(tmp_path):
    path = need(DEEPSEEK)
    hf = Tokenizer.from_file(str(path / "tokenizer.json"))
    msgs = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"},
            {"role": "user", "content": "和 3+3？"}]
    f = tmp_path / "chat.json"
    f.write_text(json.dumps(msgs, ensure_ascii=False), encoding="utf-8")
    r = run_afd(["tokenize", "--tokenizer", str(path), "--chat", str(f), "--json"])
    assert r.returncode == 0, r.stderr.decode()
    out = json.loads(r.stdout)
    assert out["template"] == "deepseek-v3"
    assert out["prompt"] == ("<｜begin▁of▁sentence｜>You are terse.<｜User｜>2+2?<｜Assistant｜>4"
                             "<｜end▁of▁sentence｜><｜User｜>和 3+3？<｜Assistant｜>")
    assert out["ids"] == hf.encode(out["prompt"], add_special_tokens=False).ids
    r = run_afd(["tokenize", "--tokenizer", str(path), "--chat", str(f), "--json",
                 "--chat-template", "step3"])
    assert r.returncode == 0, r.stderr.decode()
    out = json.loads(r.stdout)
    assert out["prompt"] == ("<｜begin▁of▁sentence｜>You are terse.<|BOT|>user\n2+2?<|EOT|>"
                             "<|BOT|>assistant\n4<|EOT|><|BOT|>user\n和 3+3？<|EOT|>"
                             "<|BOT|>assistant\n<think>\n")
    assert out["ids"] == hf.encode(out["prompt"], add_special_tokens=False).ids


@pytest.mark.parametrize("args,needle", [
    (["tokenize", "--tokenizer", "/nonexistent/dir", "--text", "x"], "/nonexistent/dir"),
    (["tokenize", "--tokenizer", "{DS}"], "exactly one of"),
    (["tokenize", "--tokenizer", "{DS}", "--text", "a", "--file", "b"], "exactly one of"),
    (["detokenize", "--tokenizer", "{DS}", "--ids", "1,x"], "not a token id"),
    (["detokenize", "--tokenizer", "{DS}", "--ids", "999999"], "not a token id"),
    (["tokenize", "--tokenizer", "{DS}", "--chat", "/nonexistent.json"], "/nonexistent.json"),
])
def test_errors_are_one_line(args, needle):
    ds = str(need(DEEPSEEK))
    r = run_afd([a.replace("{DS}", ds) for a in args])
    assert r.returncode != 0
    err = r.stderr.decode().strip()
    assert err.startswith("afd: error: ") and "\n" not in err and needle in err, err
