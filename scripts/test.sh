#!/usr/bin/env bash
# The full test suite, on a fresh machine: Rust unit, integration and property tests; Python
# interop tests (pyarrow, pandas, polars, DuckDB in a local .venv); the shared acceptance
# checks of the commands built so far.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"

cargo build --release --locked
cargo test --release --locked --workspace

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/interop/requirements.txt
[ -f ../shared/acceptance/requirements.txt ] && \
  .venv/bin/pip install --quiet --disable-pip-version-check -r ../shared/acceptance/requirements.txt
ATTNFRAMES_BIN="$target/release/attnframes" .venv/bin/python -m pytest -q tests/interop

acceptance=../shared/acceptance
if [ -d "$acceptance/public" ]; then
  # The checks of the commands this build has: inspect, topk, received, dense, similarity,
  # compare and their bad inputs.
  checks='^(topk|received|inspect|dense|similarity|compare)_|^(missing_file|truncated_npy|empty_npy|int32_dtype|nan_attention|inf_attention'
  checks+='|tokens_wrong_length|4d_without_layout|layout_ndim_mismatch|npz_missing_key|safetensors_missing_key'
  checks+='|head_importance_shape|attention_mask_shape|ids_outside_vocab|k_zero|layer_selection_out_of_range'
  checks+='|inspect_missing_file|allow_nan_ranks_last|lf_global_shape_mismatch|lf_lastdim_inconsistent'
  checks+='|multi_global_without_mask|global_mask_count_mismatch|attributions_wrong_length|compare_block_mismatch)$'
  .venv/bin/python "$acceptance/check.py" --bin "$target/release/attnframes" --corpus "$acceptance/public" \
    --cases minilm_batch,minilm_long,longformer_single_global,longformer_multi_global,spacetime_pair,bad_inputs \
    --checks "$checks"
else
  echo "acceptance set not found beside the repository ($acceptance): skipped"
fi
