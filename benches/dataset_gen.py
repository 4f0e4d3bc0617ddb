"""The dataset workload: N example files of (12,1,12,128,128) float32 attention, one per
example, with per-file tokens — heads made by ../shared/bench/gen_inputs.py's generator.

    python benches/dataset_gen.py OUT_DIR [N=200]

Writes OUT_DIR/attn/ex000.npy … and OUT_DIR/tokens/ex000.json …
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "shared", "bench"))
from gen_inputs import children, dense_head, head_params, make_tokens  # noqa: E402

L, B, H, S = 12, 1, 12, 128


def main():
    out = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    os.makedirs(os.path.join(out, "attn"), exist_ok=True)
    os.makedirs(os.path.join(out, "tokens"), exist_ok=True)
    for i in range(n):
        tok_ss, head_ss = children(10_000 + i, L, H)
        tokens = make_tokens(S, np.random.default_rng(tok_ss))
        sep_pos = np.array([j for j, t in enumerate(tokens) if t == "[SEP]"])
        a = np.empty((L, B, H, S, S), dtype=np.float32)
        for l in range(L):
            for h in range(H):
                rng = np.random.default_rng(head_ss[l][h])
                a[l, 0, h] = dense_head(rng, S, sep_pos, head_params(rng, h))
        np.save(os.path.join(out, "attn", f"ex{i:03d}.npy"), a)
        with open(os.path.join(out, "tokens", f"ex{i:03d}.json"), "w", encoding="utf-8") as f:
            json.dump(tokens, f)


if __name__ == "__main__":
    main()
