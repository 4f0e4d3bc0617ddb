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


# --------------------------------------------------------------------------------------------
# melt, cluster, plot
# --------------------------------------------------------------------------------------------

def test_melt_pivots_back_to_the_tensor(tmp_path):
    out = tmp_path / "long.parquet"
    axes = ["layer", "batch", "head", "query_position", "position"]
    run("melt", "--attn", FIX / "attentions.npy", "--axes", ",".join(axes),
        "--tokens", FIX / "tokens.json", "-o", out)
    t = pq.read_table(out)
    assert t.schema.field("layer").type == pa.uint16() and t.schema.field("position").type == pa.uint32()
    assert t.schema.field("value").type == pa.float32()
    df = t.to_pandas()
    back = np.zeros(A.shape, dtype=A.dtype)
    back[tuple(df[a].to_numpy().astype(np.int64) for a in axes)] = df["value"].to_numpy()
    assert np.array_equal(back, A)                      # exact, not close
    first = df[(df.batch == 1)].iloc[:A.shape[-1]]          # layer 0, head 0, query 0
    assert list(first.token) == (TOKENS[1] if isinstance(TOKENS[0], list) else TOKENS)
    # DuckDB can pivot it back too: one row per (layer, batch, head, query_position).
    n = duckdb.sql(f"SELECT count(*) FROM (SELECT layer, batch, head, query_position, list(value ORDER BY position) "
                   f"FROM '{out}' GROUP BY ALL)").fetchall()[0][0]
    assert n == np.prod(A.shape[:4])


def test_cluster_silhouette_matches_scikit_learn(tmp_path):
    from sklearn.metrics import silhouette_score
    labels, scores = tmp_path / "l.parquet", tmp_path / "s.parquet"
    run("cluster", "--attn", FIX / "attentions.npy", "--attention-mask", FIX / "attention_mask.npy",
        "--layer", 3, "--head", 5, "--batch", 1, "--rows", "odd", "--k-range", "2-4", "-o", labels, "--scores", scores)
    lab = pq.read_table(labels).to_pandas()
    sc = pq.read_table(scores).to_pandas()
    valid = np.flatnonzero(MASK[1])
    odd = valid[valid % 2 == 1]
    assert list(lab.query_position) == list(odd)
    X = A[3, 1, 5][np.ix_(odd, valid)].astype(np.float64)
    chosen = sc[sc.chosen].iloc[0]
    assert lab.cluster.nunique() == chosen.k
    assert abs(silhouette_score(X, lab.cluster) - chosen.silhouette) < 1e-9
    assert chosen.silhouette == sc.silhouette.max()


def test_plot_svg_is_well_formed_with_one_cell_per_entry(tmp_path):
    import xml.etree.ElementTree as ET
    out = tmp_path / "h.svg"
    run("plot", "--attn", FIX / "attentions.npy", "--layer", 1, "--head", 2, "--batch", 0,
        "--tokens", FIX / "tokens.json", "-o", out)
    root = ET.parse(out).getroot()
    assert root.tag.endswith("svg")
    rects = [r for r in root.iter() if r.tag.endswith("rect")]
    S = A.shape[-1]
    assert len(rects) >= S * S                          # heat cells (+ background and colour bar)
    texts = "".join(t.text or "" for t in root.iter() if t.tag.endswith("text"))
    assert "layer 1, head 2" in texts


def chromium():
    for name in ("chromium", "chromium-browser"):
        for d in os.environ.get("PATH", "").split(os.pathsep):
            if os.access(os.path.join(d, name), os.X_OK):
                return os.path.join(d, name)
    pytest.fail("chromium is not installed (scripts/test.sh installs Debian's package)")


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_plot_text_html_renders_in_chromium(tmp_path):
    from PIL import Image
    out = tmp_path / "text.html"
    run("plot", "--attn", FIX / "attentions.npy", "--tokens", FIX / "tokens.json",
        "--attention-mask", FIX / "attention_mask.npy", "--text", "--batch", 0, "-o", out)
    browser = chromium()
    shot = tmp_path / "shot.png"
    flags = CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'profile'}"]
    subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1000,600", out.as_uri()],
                   capture_output=True, timeout=120, check=True)
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 50, "screenshot is blank"
    reddish = (img[..., 0] > 200) & (img[..., 1] < 150) & (img[..., 2] < 150)
    assert reddish.sum() > 100, "no highlighted token visible"
    dom = subprocess.run([browser, *flags, "--dump-dom", out.as_uri()],
                         capture_output=True, timeout=120, check=True).stdout.decode()
    import html as htmllib
    import re
    shown = [htmllib.unescape(s) for s in re.findall(r'<span class="tok"[^>]*>(.*?)</span>', dom)]
    toks = TOKENS[0] if isinstance(TOKENS[0], list) else TOKENS
    want = [t[2:] if t.startswith("##") else t for t, m in zip(toks, MASK[0]) if m]
    assert shown == want


def test_cluster_svm_against_scikit_learn_linear_svc(tmp_path):
    from sklearn.svm import SVC, LinearSVC
    cf = ROOT / "tests" / "fixtures" / "cluster_features"
    X = np.load(cf / "features.npy")
    labels, coefs = tmp_path / "l.parquet", tmp_path / "c.parquet"
    run("cluster", "--attn", cf / "attentions.npy", "--layer", 0, "--head", 0, "--rows", "both",
        "--k-range", "2-6", "--features", cf / "features.npy", "-o", labels, "--coefs", coefs)
    lab, co = pq.read_table(labels).to_pandas(), pq.read_table(coefs).to_pandas()
    for rows in ("even", "odd"):
        l, c = lab[lab.rows == rows], co[co.rows == rows]
        x, y = X[l.query_position.to_numpy()], l.cluster.to_numpy()
        w, b = c.coef.to_numpy(), c.intercept.iloc[0]
        ours = (x @ w + b >= 0).astype(int)
        assert (ours == y).all() and (c.accuracy == 1.0).all()
        for model in (LinearSVC(C=1.0), LinearSVC(C=1.0, loss="hinge", max_iter=100_000)):
            model.fit(x, y)
            assert (model.predict(x) == ours).all()
            assert np.corrcoef(w, model.coef_.ravel())[0, 1] > 0.99
        # The same problem as libsvm's linear C-SVC: the same solution.
        exact = SVC(kernel="linear", C=1.0).fit(x, y)
        np.testing.assert_allclose(w, exact.coef_.ravel(), atol=2e-3)
        np.testing.assert_allclose(b, exact.intercept_[0], atol=2e-3)
