"""Longformer input read as sparse rows (the window plus the global slots) gives the frames of
the dense matrix: random windows, global positions and padding, HF's layout built here with
numpy, each command run on the Longformer pair and on the dense tensor it stands for."""
import os
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("ATTNFRAMES_BIN", str(ROOT / "target" / "release" / "attnframes"))


def run(*args):
    p = subprocess.run([BIN, "--quiet", *map(str, args)], capture_output=True)
    assert p.returncode == 0, p.stderr.decode()


def longformer_case(seed):
    """HF LongformerSelfAttention's outputs for random rows: (sliding, global or None, dense,
    global mask, attention mask)."""
    rng = np.random.default_rng(seed)
    L, B, H = 2, 2, 2
    w = int(rng.choice([2, 4, 6]))
    S = int(rng.integers(w + 3, 24))
    half = w // 2
    lengths = [S, int(rng.integers(max(2, S // 2), S + 1))]
    n_glob = [int(rng.integers(0, 4)) for _ in range(B)] if seed % 4 else [0, 0]  # x = 0 too
    globals_ = [sorted(rng.choice(lengths[b], size=min(n_glob[b], lengths[b]), replace=False).tolist())
                for b in range(B)]
    x = max(len(g) for g in globals_)
    s_pad = S + (-S) % w
    sliding = np.zeros((L, B, H, S, x + w + 1), np.float32)
    glob = rng.random((L, B, H, s_pad, x), dtype=np.float32)  # slots beyond a row's globals: noise
    dense = np.zeros((L, B, H, S, S), np.float32)
    for b in range(B):
        n, g = lengths[b], globals_[b]
        for l in range(L):
            for h in range(H):
                for q in range(S):
                    if q in g:
                        p = np.zeros(S, np.float32)
                        p[:n] = rng.dirichlet(np.ones(n) * 0.3).astype(np.float32)
                        dense[l, b, h, q] = p
                        glob[l, b, h, :S, g.index(q)] = p
                        glob[l, b, h, S:, g.index(q)] = 0
                        continue
                    window = [k for k in range(q - half, q + half + 1) if 0 <= k < n and k not in g]
                    keys = sorted(set(window) | set(g))
                    if not keys:  # a padded query whose window holds only padding
                        continue
                    p = rng.dirichlet(np.ones(len(keys)) * 0.3).astype(np.float32)
                    if rng.random() < 0.2:  # an attention that underflows to 0
                        p[rng.integers(len(p))] = 0.0
                    for k, v in zip(keys, p):
                        dense[l, b, h, q, k] = v
                        if k in g:
                            sliding[l, b, h, q, g.index(k)] = v
                        else:
                            sliding[l, b, h, q, x + k - q + half] = v
    gmask = np.zeros((B, S), np.int64)
    for b, g in enumerate(globals_):
        gmask[b, g] = 1
    amask = np.array([[1] * n + [0] * (S - n) for n in lengths], np.int64)
    return sliding, (glob if x > 0 else None), dense, gmask, amask


COMMANDS = [
    ("topk", ["-k", "3"]),
    ("topk", ["--all"]),
    ("topk", ["--nonzero"]),
    ("received", []),
    ("received", ["--reduce", "heads", "--normalize", "minmax"]),
    ("received", ["--reduce", "layers"]),
    ("received", ["--reduce", "all", "-k", "4"]),
    ("similarity", ["--attributions", "attr.npy"]),
    ("headstats", []),
]


@pytest.mark.parametrize("seed", range(8))
def test_sparse_rows_equal_dense_rows(tmp_path, seed):
    sliding, glob, dense, gmask, amask = longformer_case(seed)
    np.save(tmp_path / "s.npy", sliding)
    np.save(tmp_path / "d.npy", dense)
    np.save(tmp_path / "gm.npy", gmask)
    np.save(tmp_path / "am.npy", amask)
    np.save(tmp_path / "attr.npy", np.random.default_rng(seed).normal(size=amask.shape))
    if glob is None:
        longformer = ["--sliding-window"]
    else:
        np.save(tmp_path / "g.npy", glob)
        longformer = ["--global-attn", "g.npy", "--global-mask", "gm.npy"]
    for cmd, extra in COMMANDS:
        os.chdir(tmp_path)
        run(cmd, "--attn", "s.npy", *longformer, "--attention-mask", "am.npy", *extra, "-o", "lf.parquet")
        run(cmd, "--attn", "d.npy", "--attention-mask", "am.npy", *extra, "-o", "dense.parquet")
        got = pq.read_table(tmp_path / "lf.parquet").to_pydict()
        want = pq.read_table(tmp_path / "dense.parquet").to_pydict()
        if cmd != "headstats":
            assert got.keys() == want.keys()
            for col, values in want.items():  # equal values, NaN equal to NaN
                assert [v if v == v else "nan" for v in got[col]] == \
                       [v if v == v else "nan" for v in values], (cmd, extra, col)
            continue
        for col, values in want.items():
            if isinstance(values[0], float):
                np.testing.assert_allclose(np.array(got[col], float), np.array(values, float),
                                           rtol=2e-6, atol=1e-9, err_msg=col)
            else:
                assert got[col] == values, col
