#!/usr/bin/env bash
# Regenerates the pictures in docs/figures from the committed examples (README, "Pictures").
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-target}/release/attnframes"
out=docs/figures
ex=examples
eeg=tests/fixtures/spacetime
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$bin" plot --attn $ex/attentions.npy --tokens $ex/tokens.json --attention-mask $ex/attention_mask.npy \
  --batch 0 --layer 5 --head 0 -o $out/heatmap.png
"$bin" plot --attn $ex/attentions.npy --tokens $ex/tokens.json --attention-mask $ex/attention_mask.npy \
  --batch 0 --grid --layers 0-2 --heads 0-3 -o $out/grid.png
"$bin" plot --attn $ex/attentions.npy --batch 0 --layers 0 --heads 0-1 --grid --annotate \
  --attention-mask $ex/attention_mask.npy --colormap purples -o $out/annotated.png
"$bin" plot --attn $eeg/run_a.npy --layer 0 --head 8 --channels "SP1,SP2,TO1,TO2,TO'1,TO'2" --block 6 \
  --colormap nipy-spectral -o $out/channels.png
"$bin" plot --attn $ex/attentions.npy --tokens $ex/tokens.json --attention-mask $ex/attention_mask.npy \
  --batch 0 --text -o $out/text.html
"$bin" plot --attn $ex/attentions.npy --tokens $ex/tokens.json --attention-mask $ex/attention_mask.npy \
  --batch 0 --text -o $out/text.tex
"$bin" cluster --attn $ex/attentions.npy --tokens $ex/tokens.json --attention-mask $ex/attention_mask.npy \
  --batch 2 --layer 2 --head 7 --rows both --k-range 2-5 --features $ex/features.npy \
  -o "$tmp/labels.parquet" --scores "$tmp/scores.parquet" --coefs "$tmp/coefs.parquet" --plot $out/cluster.png
# The HTML page as the browser shows it.
profile=$(mktemp -d)
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$profile" --hide-scrollbars \
  --screenshot="$PWD/$out/text.png" --window-size=900,260 "file://$PWD/$out/text.html" 2>/dev/null
rm -rf "$profile"
