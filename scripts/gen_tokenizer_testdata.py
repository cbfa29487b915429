#!/usr/bin/env python3
"""Generate the tokenizer test data in tests/data/ (run once; the output is committed).

  tests/data/tokenizer-small/        a tiny byte-level BPE (600 ids) trained with HF tokenizers'
                                     BpeTrainer, with DeepSeek-V3's exact pre-tokenizer (three
                                     Splits + ByteLevel without regex), added tokens special and
                                     not, and a tokenizer_config.json that adds BOS;
                                     golden.jsonl holds HF's ids and decodes for the C++ tests
  tests/data/tokenizer-small-gpt2/   the same vocabulary with the GPT-2 ByteLevel regex and a
                                     TemplateProcessing post-processor (BOS from tokenizer.json)
  tests/data/chat_golden.json        DeepSeek-V3's Jinja chat_template rendered by jinja2 the way
                                     transformers does, for the C++ chat template tests

Needs `tokenizers` and `jinja2` (pip). Reads ../shared/data/tokenizers/deepseek-v3 for the chat
template. Run from the repository root: python3 scripts/gen_tokenizer_testdata.py
"""
from __future__ import annotations

import json
from pathlib import Path

import jinja2.sandbox
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
from tokenizers import pre_tokenizers, processors, trainers

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
DEEPSEEK = REPO.parent / "shared" / "data" / "tokenizers" / "deepseek-v3"

# DeepSeek-V3's Split patterns, verbatim (the third holds literal CR and LF characters).
DEEPSEEK_SPLITS = [
    r"\p{N}{1,3}",
    "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?"
    "[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
]

CORPUS = [
    "The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs away.",
    "Tokenizers split text into pieces, then merge bytes by rank into tokens.",
    "It's what they'd say: we'll see, you're right, I've been there, don't worry.",
    "def encode(text):\n    return [vocab[t] for t in text.split()]\n",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }\n",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000 2024 3.14159 42 007.",
    "你好，世界！我们今天学习分词器。中文文本没有空格。",
    "こんにちは、世界。カタカナとひらがな。",
    "안녕하세요 세계",
    "Emoji: 😀 👍 🎉 and symbols: © ® ™ → ← ∑ √ ∞.",
    "    indented line\n\ttabbed line\r\nwindows line\n\n\nthree newlines",
]
SPECIALS = ["<|bos|>", "<|eos|>"]          # special, matched on the raw text
ADDED = ["<|user|>", "<|assistant|>"]      # not special, normalized: matched after normalizing
EOT = "<|eot|>"                             # special and normalized, like DeepSeek's <|EOT|>

GOLDEN_TEXTS = [
    "", "a", "The quick brown fox.", "  two  spaces", "tabs\tand\nnewlines\r\n",
    "you're it's we'll", "numbers 1234567 and 3.14", "你好，世界！", "こんにちは", "안녕",
    "😀👍🏽 👨\u200d👩\u200d👧", "<|user|>hi<|assistant|>hello<|eot|>", "<|bos|>x<|eos|>",
    "a<|user|>b <|user|> c", "<<|user|>>", "<|user", "code: f(x) = x**2 + 1;\n",
    "\u00e9\u0301 combining", "\x00\x7f control", "Ωμέγα Привет", "1️⃣ keycap", "\n\n\n",
    "   ", "x\u00a0y\u3000z", "unseen words: zyxwv qqq",
]


def train() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(p), behavior="isolated") for p in DEEPSEEK_SPLITS]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=600, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[AddedToken(s, normalized=False) for s in SPECIALS])
    tok.train_from_iterator(CORPUS * 20, trainer)
    tok.add_tokens([AddedToken(s, normalized=True) for s in ADDED])
    tok.add_special_tokens([AddedToken(EOT, normalized=True)])
    return tok


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def main() -> None:
    tok = train()
    small = DATA / "tokenizer-small"
    small.mkdir(parents=True, exist_ok=True)
    # Merges as "a b" strings here (DeepSeek-V3's form; older tokenizers write only this) and as
    # [a, b] pairs in the GPT-2 flavour below (what tokenizers >= 0.20 writes): both are read.
    doc = json.loads(tok.to_str())
    doc["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m
                              for m in doc["model"]["merges"]]
    write_json(small / "tokenizer.json", doc)
    write_json(small / "tokenizer_config.json",
               {"add_bos_token": True, "add_eos_token": False, "bos_token": "<|bos|>",
                "eos_token": "<|eos|>", "chat_template": "step3",
                "tokenizer_class": "LlamaTokenizerFast"})
    bos = tok.token_to_id("<|bos|>")
    with (small / "golden.jsonl").open("w", encoding="utf-8") as f:
        for text in GOLDEN_TEXTS:
            ids = [bos] + tok.encode(text, add_special_tokens=False).ids
            f.write(json.dumps({"text": text, "ids": ids,
                                "decoded": tok.decode(ids, skip_special_tokens=True),
                                "decoded_all": tok.decode(ids, skip_special_tokens=False)},
                               ensure_ascii=False) + "\n")

    # The GPT-2 flavour: regex in ByteLevel, BOS from a TemplateProcessing post-processor.
    gpt2 = Tokenizer.from_str(tok.to_str())
    gpt2.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    gpt2.post_processor = processors.TemplateProcessing(
        single="<|bos|> $A", special_tokens=[("<|bos|>", bos)])
    (DATA / "tokenizer-small-gpt2").mkdir(parents=True, exist_ok=True)
    gpt2.save(str(DATA / "tokenizer-small-gpt2" / "tokenizer.json"), pretty=True)

    # DeepSeek-V3's chat template rendered as transformers' apply_chat_template does.
    cfg = json.loads((DEEPSEEK / "tokenizer_config.json").read_text(encoding="utf-8"))
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    template = env.from_string(cfg["chat_template"])
    chats = [
        [{"role": "user", "content": "Hi"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
        [{"role": "system", "content": "S1"}, {"role": "user", "content": "u1"},
         {"role": "assistant", "content": "a1"}, {"role": "system", "content": "S2"},
         {"role": "user", "content": "u2"}],
        [{"role": "user", "content": "weather?"}, {"role": "tool", "content": "sunny"},
         {"role": "tool", "content": "25C"}, {"role": "assistant", "content": "Sunny, 25C."},
         {"role": "user", "content": "thanks"}],
        [{"role": "user", "content": "call"}, {"role": "tool", "content": "out"}],
        [{"role": "user", "content": "多语言 ✓\n\nline"}, {"role": "assistant", "content": ""}],
        [],
    ]
    golden = []
    for msgs in chats:
        for gen in (True, False):
            golden.append({"messages": msgs, "add_generation_prompt": gen,
                           "text": template.render(messages=msgs, add_generation_prompt=gen,
                                                   bos_token="<｜begin▁of▁sentence｜>")})
    write_json(DATA / "chat_golden.json", {"template": "deepseek-v3", "cases": golden})
    print(f"wrote {small}, {DATA / 'tokenizer-small-gpt2'}, {DATA / 'chat_golden.json'}")


if __name__ == "__main__":
    main()
