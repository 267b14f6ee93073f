#!/usr/bin/env bash
# The main job, end to end and offline, on the built-in corpus (the Python help topics).
# Each step is a command a user would type; outputs go to demo-run/.
set -euo pipefail
# Nothing here may reach a model or dataset hub.
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
out=${DLNLP_DEMO_DIR:-demo-run}
rm -rf "$out"; mkdir -p "$out"
corpus=builtin:python-help

echo "== 1. train a byte-level BPE tokenizer on $corpus"
dlnlp tokenize train "$corpus" --model bpe --vocab-size 4000 --out "$out/tokenizer.json"
dlnlp tokenize inspect "$out/tokenizer.json" --sample "def main(): return 42" --corpus "$corpus"

echo "== 2. encode the corpus to ids and decode it back"
dlnlp tokenize encode "$corpus" -t "$out/tokenizer.json" --output "$out/corpus.ids"
dlnlp tokenize decode "$out/corpus.ids" -t "$out/tokenizer.json" --output "$out/corpus.roundtrip.txt"
python3 -c "import pydoc_data.topics as t, sys; sys.stdout.write('\n'.join(t.topics[k].strip(chr(10)) for k in sorted(t.topics)) + '\n')" > "$out/corpus.txt"
if cmp -s "$out/corpus.txt" "$out/corpus.roundtrip.txt"; then
  echo "round trip: byte-identical ($(wc -c < "$out/corpus.txt") bytes, $(wc -w < "$out/corpus.ids") tokens)"
else
  echo "round trip: MISMATCH" >&2; exit 1
fi

echo "== 3. train a small GPT on $corpus with that tokenizer (a 2-minute budget on a CPU)"
dlnlp gpt train "$corpus" --tokenizer "$out/tokenizer.json" --layers 2 --heads 4 --dim 128 --block-size 128 \
  --batch-size 16 --lr 2e-3 --warmup 20 --max-time 120 --eval-interval 0 --out "$out/gpt"
dlnlp gpt eval "$out/gpt" "$out/corpus.txt"

echo "== 4. decode a prompt: beam search (the 2 best of 4 beams), then sampling"
dlnlp generate "$out/gpt" --prompt "The" --strategy beam --num-beams 4 --num-return 2 --max-new-tokens 30 \
  --min-new-tokens 10 --no-repeat-ngram 3
dlnlp generate "$out/gpt" --prompt "The" --strategy sample --temperature 0.8 --top-p 0.9 --max-new-tokens 60 \
  --min-new-tokens 20 --seed 1
