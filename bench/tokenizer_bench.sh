#!/usr/bin/env bash
# Tokenizer encode rate on one core: afd's byte-level BPE on the DeepSeek-V3 tokenizer (Step-3's)
# next to Hugging Face `tokenizers` (the Rust library, one encode() call per prompt, one thread)
# on the same prompts in the same run. Prompts: N texts of about 1,000 characters mixed from the
# oracle test's corpus (English, CJK, code, digits, emoji, whitespace runs, special tokens).
# Usage: bench/tokenizer_bench.sh [N] [AFD_BINARY]   (default 2000, build/afd)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
AFD=${2:-build/afd}
TOK=${AFD_TOKENIZER:-../shared/data/tokenizers/deepseek-v3}
[ -x "$AFD" ] || { echo "no afd binary at $AFD (scripts/setup.sh builds it)" >&2; exit 1; }
[ -f "$TOK/tokenizer.json" ] || { echo "no tokenizer at $TOK" >&2; exit 1; }
PROMPTS=$(mktemp /tmp/afd-tok-bench.XXXXXX.jsonl)
trap 'rm -f "$PROMPTS"' EXIT

python3 - "$N" "$PROMPTS" <<'PY'
import json, random, sys
sys.path.insert(0, "tests/oracle")
from test_tokenizer_oracle import corpus
texts, rng = corpus(), random.Random(1)
with open(sys.argv[2], "w", encoding="utf-8") as f:
    for _ in range(int(sys.argv[1])):
        s = ""
        while len(s) < 1000:
            s += rng.choice(texts) + " "
        f.write(json.dumps(s, ensure_ascii=False) + "\n")
PY

# afd: the rate line (stderr) counts encode() time only, not reading or printing.
AFD_LINE=$(taskset -c 0 "$AFD" tokenize --tokenizer "$TOK" --jsonl "$PROMPTS" --time 2>&1 >/dev/null)
python3 - "$TOK" "$PROMPTS" "$AFD_LINE" <<'PY'
import json, sys, time
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1] + "/tokenizer.json")
texts = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8")]
nbytes = sum(len(t.encode()) for t in texts)
best = 1e9
for _ in range(3):
    t0 = time.perf_counter()
    n = sum(len(tok.encode(t, add_special_tokens=False).ids) for t in texts)
    best = min(best, time.perf_counter() - t0)
afd = sys.argv[3].split()
afd_s = float(afd[afd.index("in") + 1])
print(f"prompts: {len(texts)}, {nbytes / len(texts):.0f} bytes each on average")
print("| tokenizer | prompts/s | M tokens/s | MB/s |")
print("|---|---|---|---|")
print(f"| afd (one core) | {len(texts) / afd_s:.0f} | {int(afd[2]) / afd_s / 1e6:.2f} | "
      f"{nbytes / afd_s / 1e6:.1f} |")
print(f"| HF tokenizers {__import__('tokenizers').__version__} (one thread) | "
      f"{len(texts) / best:.0f} | {n / best / 1e6:.2f} | {nbytes / best / 1e6:.1f} |")
PY
