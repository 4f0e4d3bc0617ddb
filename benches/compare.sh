#!/usr/bin/env bash
# attnframes against the numpy + pyarrow peer (../shared/bench/peer_numpy.py), same inputs,
# same run: wall time (best of 3, process start included, page cache warm) and peak RSS
# (/usr/bin/time -v, one more run).
#
#   benches/compare.sh [--only bert512,dense2048,lf4096,led16k,dataset200]
#
# Inputs are generated once into bench-data/ (about 3.8 GB; led16k 4.8 GB more, only when
# asked for) by ../shared/bench/gen_inputs.py.
# lf4096 (Longformer, S = 4096) runs once per tool: the peer densifies it to 9.7 GB first,
# so its topk and received are `dense` followed by the dense command; `dd` writing 9.7 GB
# with fdatasync is the disk's reference for `dense`.
set -euo pipefail
cd "$(dirname "$0")/.."
bench=../shared/bench
data=bench-data
only=bert512,dense2048,lf4096
[ "${1:-}" = "--only" ] && only=$2
py=.venv/bin/python
[ -x "$py" ] || { python3 -m venv .venv; .venv/bin/pip install -q numpy pyarrow scikit-learn; }
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked -q
bin="$target/release/attnframes"
for w in ${only//,/ }; do
  [ "$w" = dataset200 ] && continue
  [ -f "$data/$w/attn.npy" ] || [ -f "$data/$w/sliding.npy" ] || "$py" "$bench/gen_inputs.py" --out "$data" --only "$w" >&2
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

measure() { # command...: prints "best_seconds peak_rss_mb"
  # Timed runs start the command directly (bash's clock, no wrapper process); one more run
  # under /usr/bin/time -v reads the peak RSS. RUNS=1: that one run gives both.
  local best=999999 t0 t1
  if [ "${RUNS:-3}" = 1 ]; then
    /usr/bin/time -v -o "$out/time.txt" "$@" >/dev/null 2>"$out/err.txt" || { cat "$out/err.txt" >&2; return 1; }
    awk -F': ' '/Elapsed/ {n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; e=s}
                /Maximum resident/ {r=int($2/1024)} END {print e, r}' "$out/time.txt"
    return
  fi
  for _ in $(seq "${RUNS:-3}"); do
    t0=$EPOCHREALTIME
    "$@" >/dev/null 2>"$out/err.txt" || { cat "$out/err.txt" >&2; return 1; }
    t1=$EPOCHREALTIME
    best=$(echo "$t0 $t1 $best" | awk '{d=$2-$1; print (d<$3)?d:$3}')
  done
  /usr/bin/time -v -o "$out/time.txt" "$@" >/dev/null 2>&1
  echo "$best $(awk -F': ' '/Maximum resident/ {print int($2/1024)}' "$out/time.txt")"
}

printf '%-36s %10s %10s %10s %10s %8s\n' workload "af (s)" "af RSS MB" "peer (s)" "peer RSS" speedup
row() { # label, attnframes args, peer args
  local label=$1 af_args=$2 peer_args=$3
  read -r at ar < <(measure "$bin" $af_args)
  if [[ $peer_args == __bash* ]]; then
    read -r pt pr < <(measure bash -c "${peer_args#__bash }")
  else
    read -r pt pr < <(measure "$py" "$bench/peer_numpy.py" $peer_args)
  fi
  printf '%-36s %10.3f %10d %10.3f %10d %7.1fx\n' "$label" "$at" "$ar" "$pt" "$pr" "$(echo "$pt $at" | awk '{print $1/$2}')"
}

lf_rows() {
  local s="$data/lf4096/sliding.npy" g="$data/lf4096/global.npy" t="$data/lf4096/tokens.json"
  local pd="$out/peer_dense.npy"
  cat "$s" "$g" > /dev/null # one run each: warm the page cache first, as best-of-3 does
  local peer_dense="\"$py\" $bench/peer_numpy.py dense --attn $s --global-attn $g -o $pd"
  RUNS=1 row "lf4096 topk -k 10" "--quiet topk --attn $s --global-attn $g --tokens $t -k 10 -o $out/af.parquet" \
      "__bash $peer_dense && \"$py\" $bench/peer_numpy.py topk --attn $pd --tokens $t -k 10 -o $out/peer.parquet; rm -f $pd"
  RUNS=1 row "lf4096 received" "--quiet received --attn $s --global-attn $g --tokens $t -o $out/af.parquet" \
      "__bash $peer_dense && \"$py\" $bench/peer_numpy.py received --attn $pd --tokens $t -o $out/peer.parquet; rm -f $pd"
  RUNS=1 row "lf4096 dense (9.7 GB)" "dense --attn $s --global-attn $g -o $out/af.npy" \
      "__bash $peer_dense; rm -f $pd $out/af.npy"
  read -r dt _ < <(RUNS=1 measure dd if=/dev/zero of="$out/dd.bin" bs=64M count=144 conv=fdatasync status=none)
  rm -f "$out/dd.bin"
  printf '%-36s %10.3f   (dd writing 9.7 GB with fdatasync, the disk reference for dense)\n' "dd 9.7 GB" "$dt"
}

# LED-base-16384 shapes (4.8 GB of sliding-window attention; its dense form would be 77 GB, so
# no numpy peer can densify it): attnframes against `cat` reading the same file, the floor for
# anything that reads it.
led_rows() {
  local s="$data/led16k/sliding.npy" g="$data/led16k/global.npy"
  read -r ct _ < <(measure sh -c "cat '$s' > /dev/null")
  printf '%-36s %10.3f   (the reference: cat sliding.npy > /dev/null, 4.8 GB)\n' "led16k cat" "$ct"
  local label args t r
  for label in "topk -k 10" "received --normalize minmax" "headstats"; do
    case $label in
      topk*) args="topk -k 10" ;;
      received*) args="received --normalize minmax" ;;
      *) args="headstats" ;;
    esac
    read -r t r < <(measure "$bin" --quiet $args --attn "$s" --global-attn "$g" -o "$out/af.parquet")
    printf '%-36s %10.3f %10d   %.2fx of cat\n' "led16k $label" "$t" "$r" "$(echo "$t $ct" | awk '{print $1/$2}')"
  done
}

# Internal ratios the issues set: similarity within 1.5x of received, compare within 1.5x of
# reading both runs once.
ratio_rows() {
  local a="$data/dense2048/attn.npy" attr="$data/dense2048/attributions.npy"
  [ -f "$attr" ] || "$py" -c "import numpy as np; np.save('$attr', np.random.default_rng(0).normal(size=(1, 2048)).astype(np.float32))"
  local chan chan_b
  chan=$(seq -s, -f 'C%g' 0 15)
  chan_b=$(seq -s, -f 'C%g' 1 15),C0
  read -r st sr < <(measure "$bin" --quiet similarity --attn "$a" --attributions "$attr" -o "$out/s.parquet")
  read -r rt _ < <(measure "$bin" --quiet received --attn "$a" -o "$out/r.parquet")
  read -r ct cr < <(measure "$bin" --quiet compare --attn "$a" --attn-b "$a" --channels-a "$chan" --channels-b "$chan_b" \
      --block 128 -o "$out/c.parquet" --blocks "$out/b.parquet")
  read -r rd _ < <(measure sh -c "cat '$a' '$a' > /dev/null")
  printf '%-36s %10.3f %10d   received %.3f s: %.2fx of it\n' "dense2048 similarity" "$st" "$sr" "$rt" "$(echo "$st $rt" | awk '{print $1/$2}')"
  printf '%-36s %10.3f %10d   reading both runs %.3f s: %.2fx of it\n' "dense2048 compare (2 runs)" "$ct" "$cr" "$rd" "$(echo "$ct $rd" | awk '{print $1/$2}')"
  read -r ht hr < <(measure "$bin" --quiet headstats --attn "$a" -o "$out/h.parquet")
  printf '%-36s %10.3f %10d   received %.3f s: %.2fx of it\n' "dense2048 headstats" "$ht" "$hr" "$rt" "$(echo "$ht $rt" | awk '{print $1/$2}')"
  row "dense2048 rollout -k 10" "--quiet rollout --attn $a -k 10 -o $out/af.parquet" \
      "__bash \"$py\" benches/rollout_numpy.py $a"
  row "dense2048 cluster head 0, k 2-9" "--quiet cluster --attn $a --layer 0 --head 0 --k-range 2-9 -o $out/af.parquet" \
      "__bash \"$py\" benches/cluster_sklearn.py $a"
}

# 200 example files of (12,1,12,128,128): one attnframes command over the glob vs a Python
# loop calling the numpy peer per file (in one process), and the same command sharded over a
# 2-worker Dask LocalCluster through the Python package.
dataset_rows() {
  local d="$data/dataset200"
  [ -d "$d/attn" ] || "$py" benches/dataset_gen.py "$d" 200 >&2
  row "dataset200 topk -k 10 (200 files)" \
      "--quiet topk --attn $d/attn/*.npy --tokens-dir $d/tokens -k 10 -o $out/ds/ --partition-by layer" \
      "__bash rm -rf $out/peer_ds && \"$py\" benches/dataset_peer.py $d $out/peer_ds"
  local best=999 t
  for _ in 1 2 3; do
    rm -rf "$out/dask_ds"
    t=$("$py" benches/dataset_dask.py "$d" "$out/dask_ds" 2 8)
    best=$(echo "$t $best" | awk '{print ($1<$2)?$1:$2}')
  done
  printf '%-36s %10.3f   (2-worker Dask LocalCluster, 8 shards, cluster start excluded)\n' "dataset200 topk on Dask" "$best"
}

for w in ${only//,/ }; do
  if [ "$w" = dataset200 ]; then
    dataset_rows
    continue
  fi
  if [ "$w" = dense2048 ]; then
    ratio_rows
  fi
  if [ "$w" = lf4096 ]; then
    lf_rows
    continue
  fi
  if [ "$w" = led16k ]; then
    led_rows
    continue
  fi
  a="$data/$w/attn.npy"
  t="$data/$w/tokens.json"
  row "$w topk -k 10" "--quiet topk --attn $a --tokens $t -k 10 -o $out/af.parquet" \
      "topk --attn $a --tokens $t -k 10 -o $out/peer.parquet"
  row "$w received --normalize minmax" "--quiet received --attn $a --tokens $t --normalize minmax -o $out/af.parquet" \
      "received --attn $a --tokens $t --normalize minmax -o $out/peer.parquet"
  if [ "$w" = bert512 ]; then
    row "$w topk --all" "--quiet topk --attn $a --tokens $t --all -o $out/af.parquet" \
        "topk --attn $a --tokens $t --all -o $out/peer.parquet"
  fi
done
