"""Interop: every output format read by pyarrow, pandas, polars and DuckDB, values checked
against numpy computed here from the same fixture."""
import json
import os
import subprocess
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("ATTNFRAMES_BIN", str(ROOT / "target" / "release" / "attnframes"))
FIX = ROOT / "tests" / "fixtures" / "minilm"
A = np.load(FIX / "attentions.npy")                      # (L, B, H, S, S)
MASK = np.load(FIX / "attention_mask.npy")
TOKENS = json.loads((FIX / "tokens.json").read_text())
HI = np.load(FIX / "head_importance.npy")


def run(*args, **kw):
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, **kw)
    assert p.returncode == 0, p.stderr.decode()
    return p


def read_any(path):
    p = str(path)
    if p.endswith(".csv"):
        return pcsv.read_csv(p, convert_options=pcsv.ConvertOptions(
            column_types={"token": pa.string(), "query_token": pa.string()}, strings_can_be_null=True))
    if p.endswith(".arrow"):
        with pa.memory_map(p) as f:
            return pa.ipc.open_file(f).read_all()
    return pq.read_table(p)


def expected_topk(k):
    rows = []
    L, B, H, S, _ = A.shape
    for b in range(B):
        valid = np.flatnonzero(MASK[b])
        for l in range(L):
            for h in range(H):
                for q in valid:
                    row = A[l, b, h, q, valid]
                    order = np.argsort(-row, kind="stable")[:k]
                    for r, i in enumerate(order):
                        rows.append((b, l, h, q, valid[i], r + 1, row[i]))
    return np.array(rows, dtype=np.float64)


@pytest.mark.parametrize("ext", ["parquet", "csv", "arrow"])
def test_topk_every_format_every_reader(tmp_path, ext):
    out = tmp_path / f"topk.{ext}"
    run("topk", "--attn", FIX / "attentions.npy", "--tokens", FIX / "tokens.json",
        "--attention-mask", FIX / "attention_mask.npy", "-k", 3, "-o", out)
    t = read_any(out)
    exp = expected_topk(3)
    assert t.num_rows == len(exp)
    got = np.column_stack([t.column(c).to_numpy().astype(np.float64) for c in
                           ["batch", "layer", "head", "query_position", "position", "rank", "score"]])
    np.testing.assert_array_equal(got[:, :6], exp[:, :6])
    np.testing.assert_allclose(got[:, 6], exp[:, 6], rtol=1e-6)
    toks = t.column("token").to_pylist()
    qtoks = t.column("query_token").to_pylist()
    for i in range(0, len(exp), 97):
        b, q, p = int(exp[i, 0]), int(exp[i, 3]), int(exp[i, 4])
        assert toks[i] == TOKENS[b][p] and qtoks[i] == TOKENS[b][q]
    if ext == "parquet":
        schema = t.schema
        assert str(schema.field("batch").type) == "uint32"
        assert str(schema.field("layer").type) == "uint16"
        assert str(schema.field("score").type) == "float"
        md = pq.read_metadata(out)
        idx = {md.schema.column(i).name: i for i in range(md.num_columns)}
        assert any("DICTIONARY" in e for e in md.row_group(0).column(idx["token"]).encodings)
        assert md.row_group(0).column(idx["score"]).statistics.has_min_max
        meta = json.loads(md.metadata[b"attnframes"])
        assert meta["command"] == "topk" and meta["shapes"]["attn"] == list(A.shape)
        con = duckdb.connect()
        desc = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM '{out}'").fetchall()}
        assert desc["batch"] == "UINTEGER" and desc["layer"] == "USMALLINT" and desc["token"] == "VARCHAR"
        assert con.execute(f"SELECT count(*) FROM '{out}'").fetchone()[0] == len(exp)
        kv = dict(con.execute(f"SELECT decode(key), decode(value) FROM parquet_kv_metadata('{out}')").fetchall())
        assert json.loads(kv["attnframes"])["version"]
        df = pd.read_parquet(out)
        assert len(df) == len(exp) and df["token"].iloc[0] == TOKENS[0][int(exp[0, 4])]
        pdf = pl.read_parquet(out)
        assert pdf.height == len(exp) and pdf["rank"].dtype == pl.UInt32
    else:
        assert len(pl.read_csv(out) if ext == "csv" else pl.read_ipc(out)) == len(exp)
        if ext == "csv":
            assert duckdb.connect().execute(f"SELECT count(*) FROM read_csv_auto('{out}')").fetchone()[0] == len(exp)
            assert len(pd.read_csv(out)) == len(exp)


def test_ipc_stream_on_stdout():
    p = run("topk", "--attn", FIX / "attentions.npy", "-k", 2, "-o", "-", "--format", "ipc")
    t = pa.ipc.open_stream(p.stdout).read_all()
    L, B, H, S, _ = A.shape
    assert t.num_rows == L * B * H * S * 2
    assert t.column("token").null_count == t.num_rows


def test_received_minmax_against_numpy(tmp_path):
    out = tmp_path / "r.parquet"
    run("received", "--attn", FIX / "attentions.npy", "--tokens", FIX / "tokens.json",
        "--attention-mask", FIX / "attention_mask.npy", "--head-importance", FIX / "head_importance.npy",
        "--normalize", "minmax", "--reduce", "all", "-o", out)
    t = pq.read_table(out).to_pandas()
    scaled = A.astype(np.float64) * HI[:, None, :, None, None]
    B = A.shape[1]
    valid = [np.flatnonzero(MASK[b]) for b in range(B)]
    # R[b] = (L, H, valid keys): sums over valid queries; one min and max over all of them.
    sums = [scaled[:, b][:, :, valid[b]][:, :, :, valid[b]].sum(axis=2) for b in range(B)]
    lo = min(r.min() for r in sums)
    hi = max(r.max() for r in sums)
    for b in range(B):
        want = ((sums[b] - lo) / (hi - lo)).sum(axis=(0, 1))
        got = t[t.batch == b].sort_values("position")
        np.testing.assert_array_equal(got.position.to_numpy(), valid[b])
        np.testing.assert_allclose(got.score.to_numpy(), want, rtol=1e-5)
        ranks = got.sort_values("rank")
        assert (np.diff(ranks.score.to_numpy()) <= 0).all()


def test_similarity_against_numpy_and_scipy(tmp_path):
    from scipy import stats
    out, ov = tmp_path / "sim.parquet", tmp_path / "overlap.parquet"
    run("similarity", "--attn", FIX / "attentions.npy", "--attention-mask", FIX / "attention_mask.npy",
        "--tokens", FIX / "tokens.json", "--attributions", FIX / "attributions.npy", "-o", out, "--overlap", ov)
    t = pq.read_table(out).to_pandas()
    attr = np.load(FIX / "attributions.npy").astype(np.float64)
    for b in range(A.shape[1]):
        valid = np.flatnonzero(MASK[b])
        recv = A[:, b][:, :, valid][:, :, :, valid].astype(np.float64).sum(axis=2)  # (L, H, n)
        a = attr[b, valid]
        for scope, att in [("last_layer", recv[-1].sum(axis=0)), ("all_layers", recv.sum(axis=(0, 1)))]:
            row = t[(t.batch == b) & (t.scope == scope)].iloc[0]
            cos = a @ att / (np.linalg.norm(a) * np.linalg.norm(att))
            np.testing.assert_allclose(row.cosine_raw, cos, rtol=1e-6)
            np.testing.assert_allclose(row.spearman, stats.spearmanr(np.abs(a), att).statistic, rtol=1e-6)
            np.testing.assert_allclose(row.pearson, stats.pearsonr(np.abs(a), att).statistic, rtol=1e-6)
            np.testing.assert_allclose(row.kendall_tau_b, stats.kendalltau(np.abs(a), att).statistic, rtol=1e-6)
    o = pq.read_table(ov).to_pandas()
    assert set(o.membership) <= {"both", "attention_only", "attribution_only"}
    assert not o.duplicated(["batch", "scope", "position"]).any()
    for (b, scope), g in o.groupby(["batch", "scope"]):
        both = g[g.membership == "both"]
        assert (both.attention_norm > 0).all() and (both.attribution_norm > 0).all()
