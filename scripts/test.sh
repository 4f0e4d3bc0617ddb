#!/usr/bin/env bash
# The full test suite, on a fresh machine: Rust unit, integration and property tests; Python
# interop tests (pyarrow, pandas, polars, DuckDB, scikit-learn, tokenizers, torch + safetensors
# to write real torch.save files, Playwright for Python to drive `view`'s pages in Debian's
# chromium — it never downloads a browser here — in a local .venv; chromium, pdflatex and
# pdftotext from Debian); the Python package (maturin wheel, pytest, Dask); the shared
# acceptance checks.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"

# Every build here (and the README's `cargo run --release -- topk ...`) compiles the
# dependencies with one feature set, which crates/workspace-hack pins, so each step reuses the
# dependencies the previous one compiled.
cargo build --release --locked --workspace
cargo test --release --locked --workspace

# Debian packages the tests start for real: chromium renders the HTML pages, pdflatex compiles
# the LaTeX text heatmap (base + recommended alone) and pdftotext reads it back.
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v pdflatex >/dev/null || missing+=(texlive-latex-base texlive-latex-recommended)
command -v pdftotext >/dev/null || missing+=(poppler-utils)
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/interop/requirements.txt
[ -f ../shared/acceptance/requirements.txt ] && \
  .venv/bin/pip install --quiet --disable-pip-version-check -r ../shared/acceptance/requirements.txt
ATTNFRAMES_BIN="$target/release/attnframes" .venv/bin/python -m pytest -q tests/interop

# The Python package: a wheel built from python/ (same target directory, so the crates are
# not compiled again), installed into .venv, tested with pytest (Dask included).
rm -rf "$target/wheels"
VIRTUAL_ENV="$PWD/.venv" PATH="$PWD/.venv/bin:$PATH" \
  .venv/bin/maturin build --release --locked -m python/Cargo.toml -o "$target/wheels" --quiet
.venv/bin/pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$target"/wheels/attnframes-*.whl
ATTNFRAMES_BIN="$target/release/attnframes" .venv/bin/python -m pytest -q python/tests

acceptance=../shared/acceptance
if [ -d "$acceptance/public" ]; then
  .venv/bin/python "$acceptance/check.py" --bin "$target/release/attnframes" --corpus "$acceptance/public"
else
  echo "acceptance set not found beside the repository ($acceptance): skipped"
fi
