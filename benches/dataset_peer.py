"""The notebook way over a dataset: a Python loop calling the numpy peer's topk on each
file, in one process (no process start per file), one Parquet file per example.

    python benches/dataset_peer.py DATA_DIR OUT_DIR [k=10]
"""
import argparse
import glob
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "shared", "bench"))
import peer_numpy  # noqa: E402


def main():
    data, out = sys.argv[1], sys.argv[2]
    k = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    os.makedirs(out, exist_ok=True)
    for path in sorted(glob.glob(os.path.join(data, "attn", "*.npy"))):
        stem = os.path.splitext(os.path.basename(path))[0]
        args = argparse.Namespace(
            attn=path,
            tokens=os.path.join(data, "tokens", f"{stem}.json"),
            k=k,
            all=False,
            out=os.path.join(out, f"{stem}.parquet"),
            compression="zstd",
        )
        peer_numpy.cmd_topk(args)


if __name__ == "__main__":
    main()
