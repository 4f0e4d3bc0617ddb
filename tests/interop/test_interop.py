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


def test_a_dataset_into_one_arrow_file_reads_in_every_reader(tmp_path):
    # Each example brings its own token and example_id dictionaries, and an Arrow IPC file
    # allows one per column: the file holds their values as plain strings.
    files = []
    for stem in ("a", "b"):
        files.append(tmp_path / f"{stem}.npy")
        np.save(files[-1], A)
        (tmp_path / f"{stem}.json").write_text(json.dumps(TOKENS))
    run("topk", "--attn", *files, "--tokens-dir", tmp_path, "-k", 2, "-o", tmp_path / "t.arrow")
    run("topk", "--attn", *files, "--tokens-dir", tmp_path, "-k", 2, "-o", tmp_path / "t.parquet")
    arrow = read_any(tmp_path / "t.arrow")
    assert arrow.schema.field("token").type == pa.large_string()
    want = pq.read_table(tmp_path / "t.parquet").to_pandas()
    for got in (arrow.to_pandas(), pl.read_ipc(tmp_path / "t.arrow").to_pandas(),
                duckdb.sql("SELECT * FROM arrow").df()):
        pd.testing.assert_frame_equal(got.astype(str), want.astype(str))


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


# --------------------------------------------------------------------------------------------
# headstats, rollout
# --------------------------------------------------------------------------------------------

def numpy_headstats(A, mask, tokens, hi=None):
    rows = []
    L, B, H, S, _ = A.shape
    for b in range(B):
        v = np.flatnonzero(mask[b])
        n = len(v)
        tok = [tokens[b][p] for p in v]
        dup = np.array([[1.0 if (j < i and tok[j] == tok[i]) else 0.0 for j in range(n)] for i in range(n)])
        ind = np.zeros_like(dup)
        ind[:, 1:] = dup[:, :-1]
        ind = np.tril(ind)
        for l in range(L):
            for h in range(H):
                a = A[l, b, h][np.ix_(v, v)].astype(np.float64) * (1.0 if hi is None else hi[l, h])
                sm = 0.9999 * a + 0.0001 / n
                ent = -(sm * np.log(sm)).sum(1)
                dist = np.abs(v[:, None] - v[None, :])
                prev = np.array([a[i, i - 1] if i > 0 else 0.0 for i in range(n)])
                rows.append(dict(batch=b, layer=l, head=h, entropy=ent.mean(), entropy_norm=(ent / np.log(n)).mean(),
                                 cls_entropy=ent[0], mean_distance=(a * dist).sum(1).mean(),
                                 self_mass=np.diag(a).mean(), prev_mass=prev.mean(),
                                 next_mass=np.array([a[i, i + 1] if i + 1 < n else 0.0 for i in range(n)]).mean(),
                                 cls_mass=a[:, [j for j in range(n) if tok[j] == "[CLS]"]].sum(1).mean(),
                                 sep_mass=a[:, [j for j in range(n) if tok[j] == "[SEP]"]].sum(1).mean(),
                                 punct_mass=a[:, [j for j in range(n) if tok[j] in (".", ",")]].sum(1).mean(),
                                 sink_alpha0=a[:, 0].mean(), max_attention=a.max(),
                                 argmax_position=v[int(np.argmax(a.sum(0)))],
                                 prev_token_score=prev.sum() / a.sum(),
                                 duplicate_token_score=(a * dup).sum() / a.sum(),
                                 induction_score=(a * ind).sum() / a.sum()))
    return pd.DataFrame(rows)


def test_headstats_against_numpy(tmp_path):
    out = tmp_path / "h.parquet"
    run("headstats", "--attn", FIX / "attentions.npy", "--attention-mask", FIX / "attention_mask.npy",
        "--tokens", FIX / "tokens.json", "--head-importance", FIX / "head_importance.npy", "-o", out)
    ours = pq.read_table(out).to_pandas()
    tokens = TOKENS if isinstance(TOKENS[0], list) else [TOKENS] * A.shape[1]
    want = numpy_headstats(A, MASK, tokens, HI)
    assert len(ours) == len(want)
    for c in want.columns:
        np.testing.assert_allclose(ours[c].to_numpy(np.float64), want[c].to_numpy(np.float64), rtol=1e-6, atol=1e-9,
                                   err_msg=c)
    assert not ours.causal.any()
    # DuckDB reads it as the README's query does.
    top = duckdb.sql(f"SELECT layer, head FROM '{out}' ORDER BY sep_mass DESC LIMIT 1").fetchall()
    assert len(top) == 1


def test_headstats_pairs_jsd_against_numpy(tmp_path):
    out, pairs = tmp_path / "h.parquet", tmp_path / "p.parquet"
    run("headstats", "--attn", FIX / "attentions.npy", "--attention-mask", FIX / "attention_mask.npy",
        "--layers", "0-1", "--heads", "0-2", "--batch", 1, "-o", out, "--pairs", pairs)
    p = pq.read_table(pairs).to_pandas()
    v = np.flatnonzero(MASK[1])
    n = len(v)

    def dist(l, h):
        a = A[l, 1, h][np.ix_(v, v)].astype(np.float64)
        return 0.999 * a + 0.001 / n

    def kl(x, y):
        return (x * np.log(x / y)).sum()

    assert len(p) == 36
    for r in p.itertuples():
        x, y = dist(r.layer_a, r.head_a), dist(r.layer_b, r.head_b)
        m = 0.5 * (x + y)
        want = 0.5 * kl(x, m) + 0.5 * kl(y, m)
        assert abs(r.jsd - want) < 1e-9 * max(1.0, want), (r, want)


def numpy_rollout(A, mask, b, fuse=np.mean):
    v = np.flatnonzero(mask[b])
    J = None
    out = []
    for l in range(A.shape[0]):
        a = fuse(A[l, b][:, v][:, :, v].astype(np.float64), axis=0) + np.eye(len(v))
        a = a / a.sum(1, keepdims=True)
        J = a if J is None else a @ J
        out.append(J)
    return v, out


def test_rollout_against_numpy(tmp_path):
    out, rel = tmp_path / "r.parquet", tmp_path / "rel.parquet"
    run("rollout", "--attn", FIX / "attentions.npy", "--attention-mask", FIX / "attention_mask.npy",
        "--tokens", FIX / "tokens.json", "--all", "-o", out, "--relevance", rel)
    t = pq.read_table(out).to_pandas()
    assert list(t.columns[:8]) == ["batch", "layer", "query_position", "query_token", "position", "token", "rank", "score"]
    r = pq.read_table(rel).to_pandas()
    for b in range(A.shape[1]):
        v, Js = numpy_rollout(A, MASK, b)
        for l, J in enumerate(Js):
            got = t[(t.batch == b) & (t.layer == l)]
            M = np.zeros((A.shape[-1], A.shape[-1]))
            M[got.query_position.to_numpy(), got.position.to_numpy()] = got.score.to_numpy()
            np.testing.assert_allclose(M[np.ix_(v, v)], J, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(J.sum(1), 1.0, atol=1e-9)
            rr = r[(r.batch == b) & (r.layer == l)]
            np.testing.assert_allclose(rr.relevance.to_numpy(), J.max(0), rtol=1e-12)
    # --layers picks the cumulative layers written; --fuse max fuses by the maximum.
    run("rollout", "--attn", FIX / "attentions.npy", "--attention-mask", FIX / "attention_mask.npy",
        "--layers", 5, "--fuse", "max", "-k", 3, "-o", out)
    t = pq.read_table(out).to_pandas()
    assert set(t.layer) == {5}
    v, Js = numpy_rollout(A, MASK, 0, np.max)
    first = t[(t.batch == 0) & (t.query_position == v[0])].sort_values("rank")
    np.testing.assert_allclose(first.score.to_numpy(), np.sort(Js[5][0])[::-1][:3], rtol=1e-5)


def test_compare_jsd_tvd_and_maxima_against_numpy(tmp_path):
    out = tmp_path / "c.parquet"
    run("compare", "--attn", FIX / "attentions.npy", "--attn-b", FIX / "attentions.npy",
        "--channels-a", "c0,c1,c2,c3", "--channels-b", "c1,c0,c3,c2", "--block", 5, "-o", out)
    t = pq.read_table(out).to_pandas()
    S = A.shape[-1]
    # Run B's channel c of A's order sits at B's block index of c: c0 ↔ c1, c2 ↔ c3 swapped.
    perm = np.concatenate([np.arange(5) + 5 * blk for blk in (1, 0, 3, 2)])
    eps = 1e-10

    def kl(p, q):
        return (p * np.log((p + eps) / (q + eps))).sum(-1)

    for r in t.itertuples():
        a = A[r.layer, r.batch, r.head].astype(np.float64)
        b = A[r.layer, r.batch, r.head][np.ix_(perm, perm)].astype(np.float64)
        m = 0.5 * (a + b)
        jsd = (0.5 * kl(a, m) + 0.5 * kl(b, m)).mean()
        tvd = (0.5 * np.abs(a - b).sum(-1)).mean()
        assert abs(r.jsd_mean - jsd) < 1e-6 * max(jsd, 1e-3), (r, jsd)
        assert abs(r.tvd_mean - tvd) < 1e-9 + 1e-6 * tvd
        assert r.max_attention_a == pytest.approx(a.max()) and r.max_attention_b == pytest.approx(b.max())
    assert len(t) == np.prod(A.shape[:3])


def test_words_received_and_similarity_against_numpy(tmp_path):
    out = tmp_path / "r.parquet"
    run("received", "--attn", FIX / "attentions.npy", "--attention-mask", FIX / "attention_mask.npy",
        "--tokens", FIX / "tokens.json", "--words", "-o", out)
    t = pq.read_table(out).to_pandas()
    tokens = TOKENS if isinstance(TOKENS[0], list) else [TOKENS] * A.shape[1]
    for b in range(A.shape[1]):
        v = np.flatnonzero(MASK[b])
        groups = []
        for p in v:
            if tokens[b][p].startswith("##") and len(tokens[b][p]) > 2 and groups:
                groups[-1].append(p)
            else:
                groups.append([p])
        M = np.zeros((len(groups), A.shape[-1]))
        for w, g in enumerate(groups):
            M[w, g] = 1.0
        for l in range(A.shape[0]):
            for h in range(A.shape[2]):
                a = A[l, b, h].astype(np.float64)
                to_words = a @ M.T                                   # (S, W): sum over key pieces
                words = np.stack([to_words[g].mean(0) for g in groups])  # (W, W): mean over query pieces
                got = t[(t.batch == b) & (t.layer == l) & (t["head"] == h)].sort_values("position")
                np.testing.assert_allclose(got.score.to_numpy(), words.sum(0), rtol=1e-5, atol=1e-6)
                assert list(got.first_piece) == [g[0] for g in groups]
    assert "windowsill" in set(t.token.astype(str))
    sim = tmp_path / "s.parquet"
    run("similarity", "--attn", FIX / "attentions.npy", "--attention-mask", FIX / "attention_mask.npy",
        "--tokens", FIX / "tokens.json", "--attributions", FIX / "attributions.npy", "--words", "-o", sim)
    assert pq.read_table(sim).num_rows == 2 * A.shape[1]


# --------------------------------------------------------------------------------------------
# odd files: read exactly as numpy reads them, or refused with one clear line
# --------------------------------------------------------------------------------------------

ODD = ROOT / "tests" / "fixtures" / "odd"


@pytest.mark.parametrize("name,key", [("be_f4.npy", None), ("fortran_f16.npy", None), ("v2.npy", None),
                                      ("v3.npy", None), ("unaligned.npy", None), ("compressed.npz", "attentions"),
                                      ("zip64_path.npz", "sub/attentions"), ("unaligned.safetensors", "attentions")])
def test_odd_files_read_as_numpy_reads_them(tmp_path, name, key):
    if name.endswith(".safetensors"):
        want = np.load(ODD / "unaligned_safetensors_values.npy")
    elif name.endswith(".npz"):
        want = np.load(ODD / name)[key]
    else:
        want = np.load(ODD / name)
    out = tmp_path / "m.parquet"
    axes = ",".join(f"a{i}" for i in range(want.ndim))
    args = ["melt", "--attn", ODD / name, "--axes", axes, "-o", out]
    if key:
        args += ["--attn-key", key]
    run(*args)
    t = pq.read_table(out).to_pandas()
    got = np.zeros(want.shape, dtype=np.float64)
    got[tuple(t[f"a{i}"].to_numpy().astype(np.int64) for i in range(want.ndim))] = t["value"].to_numpy()
    assert np.array_equal(got, want.astype(np.float64))


def test_zero_length_axis_melts_to_nothing_and_is_refused_as_attention(tmp_path):
    # As numpy reads it: a tensor with no elements melts to a frame with no rows.
    out = tmp_path / "m.parquet"
    run("melt", "--attn", ODD / "zero_axis.npy", "--axes", "a,b,c", "-o", out)
    t = pq.read_table(out)
    assert t.num_rows == 0 and t.column_names == ["a", "b", "c", "value"]
    # As attention it has nothing to rank: one clear line, nothing written.
    p = subprocess.run([BIN, "topk", "--attn", ODD / "zero_axis.npy", "--layout", "HQK", "-o", tmp_path / "t.parquet"],
                       capture_output=True)
    err = p.stderr.decode()
    assert p.returncode == 1 and err.startswith("error: ") and "zero_axis.npy" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "t.parquet").exists()
