"""What real files and habits do (issue 17): the NaN rule in every command that reduces, the one
word rule for real tokenizers of four families, LaTeX that compiles, Longformer without global
tokens, mask conventions, and tensors of rank 0 and 1. Expected values come from numpy (its
NaN-aware functions where the rule says NaN is skipped) and from the tokenizers' own decoders."""
import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("ATTNFRAMES_BIN", str(ROOT / "target" / "release" / "attnframes"))


def run(*args, ok=True):
    p = subprocess.run([BIN, "--quiet", *map(str, args)], capture_output=True)
    if ok:
        assert p.returncode == 0, p.stderr.decode()
    return p


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def frame(path):
    return pq.read_table(path).to_pandas()


# ---------------------------------------------------------------------------------------------
# A. The NaN rule: a NaN entry is skipped by max/min/argmax, makes every sum (and mean, and
# metric) it enters NaN, and ranks after every number; a maximum with no number is null.

SHAPE = (2, 1, 3, 9, 9)  # L, B, H, S, S
PLACEMENTS = ["entry", "row", "column", "head"]


def nan_tensor(seed, where):
    rng = np.random.default_rng(seed)
    a = softmax(rng.normal(size=SHAPE) * 2).astype(np.float32)
    l, h = rng.integers(SHAPE[0]), rng.integers(SHAPE[2])
    q, k = rng.integers(SHAPE[3]), rng.integers(SHAPE[4])
    if where == "entry":
        a[l, 0, h, q, k] = np.nan
    elif where == "row":
        a[l, 0, h, q, :] = np.nan
    elif where == "column":
        a[l, 0, h, :, k] = np.nan
    else:
        a[l, 0, h] = np.nan
    return a


def cases():
    return [(seed, where) for where in PLACEMENTS for seed in range(3)]


def same(got, want, rtol=1e-6):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    assert np.array_equal(np.isnan(got), np.isnan(want)), (got, want)
    ok = ~np.isnan(want)
    np.testing.assert_allclose(got[ok], want[ok], rtol=rtol, atol=1e-7)


def ranked(v):
    """Positions by score descending, ties to the lower position, NaN last."""
    return np.argsort(-v, kind="stable")


@pytest.mark.parametrize("seed,where", cases())
def test_nan_topk(tmp_path, seed, where):
    a = nan_tensor(seed, where)
    np.save(tmp_path / "a.npy", a)
    run("topk", "--attn", tmp_path / "a.npy", "--allow-nan", "-k", 4, "-o", tmp_path / "t.parquet")
    t = frame(tmp_path / "t.parquet")
    L, _, H, S, _ = a.shape
    want_pos, want_score = [], []
    for l in range(L):
        for h in range(H):
            for q in range(S):
                order = ranked(a[l, 0, h, q])[:4]
                want_pos += list(order)
                want_score += list(a[l, 0, h, q, order])
    assert list(t.position) == want_pos
    same(t.score, want_score)


@pytest.mark.parametrize("seed,where", cases())
def test_nan_received(tmp_path, seed, where):
    a = nan_tensor(seed, where)
    np.save(tmp_path / "a.npy", a)
    run("received", "--attn", tmp_path / "a.npy", "--allow-nan", "--normalize", "minmax",
        "-o", tmp_path / "r.parquet")
    t = frame(tmp_path / "r.parquet")
    sums = a.astype(np.float64).sum(axis=3)  # (L, B, H, K): NaN where a NaN entered
    lo, hi = np.nanmin(sums), np.nanmax(sums)
    norm = (sums - lo) / (hi - lo)
    for (l, h), g in t.groupby(["layer", "head"]):
        v = norm[l, 0, h]
        order = ranked(v.astype(np.float32))
        assert list(g.sort_values("rank").position) == list(order)
        same(g.sort_values("position").score, v.astype(np.float32))


@pytest.mark.parametrize("seed,where", cases())
def test_nan_headstats(tmp_path, seed, where):
    a = nan_tensor(seed, where)
    np.save(tmp_path / "a.npy", a)
    run("headstats", "--attn", tmp_path / "a.npy", "--allow-nan", "-o", tmp_path / "h.parquet")
    t = frame(tmp_path / "h.parquet")
    for row in t.itertuples():
        m = a[row.layer, 0, row.head].astype(np.float64)
        if np.isnan(m).all():
            assert row.max_attention is None or np.isnan(row.max_attention)
        else:
            assert row.max_attention == pytest.approx(np.nanmax(m), rel=1e-6)
        col = m.sum(axis=0)
        if np.isnan(col).all():
            assert row.argmax_position is None or np.isnan(row.argmax_position)
        else:
            assert row.argmax_position == int(np.nanargmax(col))
        # Sums and means a NaN enters are NaN.
        assert np.isnan(row.entropy) == np.isnan(m).any()
        assert np.isnan(row.self_mass) == np.isnan(np.diag(m)).any()
        assert np.isnan(row.sink_alpha0) == np.isnan(m[:, 0]).any()
        assert (row.sink is None or row.sink != row.sink) == np.isnan(m[:, 0]).any()


def test_nan_headstats_report_r20(tmp_path):
    """The report's three heads: a NaN row, a NaN entry, all NaN; key 0 a sink everywhere."""
    rng = np.random.default_rng(20)
    logits = rng.normal(size=(1, 1, 4, 8, 8))
    logits[..., 0] += 3.0
    a = softmax(logits).astype(np.float32)
    a[0, 0, 0, 4, :] = np.nan
    a[0, 0, 1, 2, 5] = np.nan
    a[0, 0, 2] = np.nan
    np.save(tmp_path / "a.npy", a)
    run("headstats", "--attn", tmp_path / "a.npy", "--allow-nan", "-o", tmp_path / "h.parquet")
    t = pq.read_table(tmp_path / "h.parquet").to_pydict()
    assert t["argmax_position"] == [None, 0, None, 0]
    assert t["max_attention"][2] is None
    assert t["max_attention"][1] == pytest.approx(float(np.nanmax(a[0, 0, 1])))


@pytest.mark.parametrize("seed,where", cases())
def test_nan_similarity(tmp_path, seed, where):
    a = nan_tensor(seed, where)
    attr = np.random.default_rng(seed).normal(size=(1, SHAPE[3]))
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "attr.npy", attr)
    run("similarity", "--attn", tmp_path / "a.npy", "--attributions", tmp_path / "attr.npy",
        "--allow-nan", "-o", tmp_path / "s.parquet")
    t = frame(tmp_path / "s.parquet").set_index("scope")
    metrics = [c for c in t.columns if c not in ("batch",)]
    for scope, part in (("last_layer", a[-1]), ("all_layers", a)):
        has_nan = np.isnan(part).any()
        assert t.loc[scope, metrics].isna().all() == has_nan, (scope, t.loc[scope])
        if not has_nan:
            assert not t.loc[scope, ["cosine_raw", "spearman"]].isna().any()


@pytest.mark.parametrize("seed,where", cases())
def test_nan_compare(tmp_path, seed, where):
    a = nan_tensor(seed, where)
    b = softmax(np.random.default_rng(seed + 100).normal(size=SHAPE)).astype(np.float32)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    run("compare", "--attn", tmp_path / "a.npy", "--attn-b", tmp_path / "b.npy",
        "--channels-a", "x,y,z", "--channels-b", "x,y,z", "--block", 3, "--allow-nan",
        "-o", tmp_path / "c.parquet")
    t = frame(tmp_path / "c.parquet")
    for row in t.itertuples():
        x, y = a[row.layer, 0, row.head].astype(np.float64), b[row.layer, 0, row.head]
        d = np.abs(x - y)
        assert np.isnan(row.mean_abs_diff) == np.isnan(d).any()
        assert np.isnan(row.cosine) == np.isnan(x).any()
        if np.isnan(x).all():
            assert row.max_attention_a is None or np.isnan(row.max_attention_a)
            assert row.max_abs_diff is None or np.isnan(row.max_abs_diff)
        else:
            assert row.max_attention_a == pytest.approx(np.nanmax(x), rel=1e-6)
            assert row.max_abs_diff == pytest.approx(np.nanmax(d), rel=1e-6)
        assert row.max_attention_b == pytest.approx(float(y.max()), rel=1e-6)


def rollout_numpy(a, fuse):
    """Abnar & Zuidema's rollout of batch row 0 with the NaN rule: max/min skip NaN."""
    L, S = a.shape[0], a.shape[-1]
    joint = None
    out = []
    for l in range(L):
        heads = a[l, 0].astype(np.float64)
        with np.errstate(all="ignore"), __import__("warnings").catch_warnings():
            __import__("warnings").simplefilter("ignore")
            fused = {"mean": np.mean, "max": np.nanmax, "min": np.nanmin}[fuse](heads, axis=0)
        fused = fused + np.eye(S)
        fused = fused / fused.sum(axis=1, keepdims=True)
        joint = fused if joint is None else fused @ joint
        out.append(joint)
    return out


@pytest.mark.parametrize("fuse", ["mean", "max"])
@pytest.mark.parametrize("seed,where", cases())
def test_nan_rollout(tmp_path, seed, where, fuse):
    a = nan_tensor(seed, where)
    np.save(tmp_path / "a.npy", a)
    run("rollout", "--attn", tmp_path / "a.npy", "--allow-nan", "--fuse", fuse, "--all",
        "-o", tmp_path / "r.parquet", "--relevance", tmp_path / "rel.parquet")
    t = frame(tmp_path / "r.parquet")
    rel = frame(tmp_path / "rel.parquet")
    want = rollout_numpy(a, fuse)
    for l, j in enumerate(want):
        g = t[t.layer == l]
        for q in range(j.shape[0]):
            r = g[g.query_position == q].sort_values("rank")
            assert list(r.position) == list(ranked(j[q].astype(np.float32))), (l, q)
            same(r.sort_values("position").score, j[q].astype(np.float32), rtol=1e-5)
        with np.errstate(all="ignore"), __import__("warnings").catch_warnings():
            __import__("warnings").simplefilter("ignore")
            want_rel = np.nanmax(j, axis=0)
        got = rel[rel.layer == l].sort_values("position").relevance.to_numpy(np.float64)
        same(got, want_rel, rtol=1e-5)


def test_nan_cluster_is_refused_by_row(tmp_path):
    a = nan_tensor(0, "row")
    l, h = np.argwhere(np.isnan(a).any(axis=(1, 3, 4)))[0]
    q = int(np.argwhere(np.isnan(a[l, 0, h]).any(axis=1))[0][0])
    np.save(tmp_path / "a.npy", a)
    p = run("cluster", "--attn", tmp_path / "a.npy", "--allow-nan", "--layer", l, "--head", h,
            "--k-range", "2-3", "-o", tmp_path / "c.parquet", ok=False)
    err = p.stderr.decode()
    assert p.returncode == 1 and err.count("\n") == 1, err
    assert f"query position {q}" in err and "NaN" in err
    assert not (tmp_path / "c.parquet").exists()


def test_nan_plot_cells_and_text(tmp_path):
    from PIL import Image
    a = nan_tensor(1, "row")
    l, h = np.argwhere(np.isnan(a).any(axis=(1, 3, 4)))[0]
    np.save(tmp_path / "a.npy", a)
    run("plot", "--attn", tmp_path / "a.npy", "--allow-nan", "--layer", l, "--head", h,
        "--colormap", "purples", "-o", tmp_path / "p.png")
    pixels = np.asarray(Image.open(tmp_path / "p.png").convert("RGB")).reshape(-1, 3)
    assert ((pixels == [255, 165, 0]).all(axis=1)).sum() > 50  # the NaN row, in the bad colour
    a = nan_tensor(2, "column")
    np.save(tmp_path / "b.npy", a)
    json.dump([f"t{i}" for i in range(SHAPE[3])], open(tmp_path / "tok.json", "w"))
    run("plot", "--attn", tmp_path / "b.npy", "--tokens", tmp_path / "tok.json", "--allow-nan",
        "--text", "-o", tmp_path / "t.html")
    page = (tmp_path / "t.html").read_text()
    k = int(np.argwhere(np.isnan(a).all(axis=3).any(axis=(0, 1, 2)))[0][0])
    assert f'title="NaN">t{k}<' in page


# ---------------------------------------------------------------------------------------------
# B. One word rule: real tokenizers of four families, built from small vocabularies here.

TEXT = "The house is wunderbar. Hello windows café <script>\nThe end"


def wordpiece_tokenizer():
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    vocab = ["[UNK]", "[CLS]", "[SEP]", "the", "house", "is", "wunder", "##bar", ".", "hello",
             "win", "##dows", "ca", "##fe", "<", "script", ">", "end"]
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(cleanup=False)
    return tok, lambda text: "[CLS] " + text.lower().replace("é", "e") + " [SEP]"


def trained(kind):
    from tokenizers import (Tokenizer, decoders, models, pre_tokenizers, trainers, Regex)
    # Other words than TEXT's, so that its words split into pieces; every character seen.
    corpus = ["the house of windows", "hello end", "wonder bar", "cafe script <b>", " ".join(set(TEXT))] * 5
    if kind == "sentencepiece":
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        special = ["<unk>", "</s>"]
    else:
        tok = Tokenizer(models.BPE())
        if kind == "gpt2":
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        else:  # Llama 3: its split regex, then bytes without a second split
            llama3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                      r"|\s*[\r\n]+|\s+(?!\S)|\s+")
            tok.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(llama3), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tok.decoder = decoders.ByteLevel()
        special = ["<|endoftext|>"]
    alphabet = pre_tokenizers.ByteLevel.alphabet() if kind != "sentencepiece" else []
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300 if kind != "sentencepiece" else 60, special_tokens=special,
                                                         initial_alphabet=alphabet))
    return tok


def family_tokens(tmp_path, family):
    """(tokens of TEXT, the text the family's own decoder gives, tokenizer.json path, ids)."""
    if family == "bert":
        tok, shown = wordpiece_tokenizer()
        enc = tok.encode(TEXT)
        tokens = ["[CLS]", *enc.tokens, "[SEP]"]
        ids = [tok.token_to_id(t) for t in tokens]
        decoded = tok.decode(ids, skip_special_tokens=False)
    else:
        tok = trained(family)
        special = "</s>" if family == "sentencepiece" else "<|endoftext|>"
        ids = tok.encode(TEXT).ids + [tok.token_to_id(special)]
        tokens = [tok.id_to_token(i) for i in ids]
        decoded = tok.decode(ids, skip_special_tokens=False)
    # Special tokens never join a word, while decoders glue some to the text ('end</s>'):
    # set them apart on the decoder's side too.
    for special in ("[CLS]", "[SEP]", "</s>", "<|endoftext|>"):
        decoded = decoded.replace(special, f" {special} ")
    path = tmp_path / f"{family}.json"
    tok.save(str(path))
    return tokens, decoded, path, np.array([ids])


def words_of(text):
    return text.split()


@pytest.mark.parametrize("family", ["bert", "sentencepiece", "gpt2", "llama3"])
def test_word_rule_matches_the_tokenizers_decoder(tmp_path, family):
    tokens, decoded, tok_json, ids = family_tokens(tmp_path, family)
    S = len(tokens)
    a = softmax(np.random.default_rng(1).normal(size=(1, 1, 2, S, S))).astype(np.float32)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "ids.npy", ids)
    want = words_of(decoded)
    # --words merges by the rule (ids + tokenizer.json, as convert_ids_to_tokens gives them)
    run("received", "--attn", tmp_path / "a.npy", "--input-ids", tmp_path / "ids.npy",
        "--vocab", tok_json, "--words", "--reduce", "all", "-o", tmp_path / "r.parquet")
    r = frame(tmp_path / "r.parquet").sort_values("position")
    merged = list(r.token)
    # A word may hold a newline inside one piece ('>\nThe'): compare the text word by word.
    assert " ".join(merged).split() == want, (tokens, merged, want)
    assert all(w.isspace() or not w.startswith(" ") for w in merged)  # markers are not shown
    # plot --text shows the same words, byte-level glyphs decoded, '<' escaped
    json.dump(tokens, open(tmp_path / "tok.json", "w"), ensure_ascii=False)
    run("plot", "--attn", tmp_path / "a.npy", "--tokens", tmp_path / "tok.json", "--text",
        "-o", tmp_path / "t.html")
    page = (tmp_path / "t.html").read_text()
    body = page.split('<p class="text">')[1].split("</p>")[0]
    assert "<script" not in body
    shown = html.unescape(re.sub(r"<[^>]+>", "", body.replace("<br>", "\n")))
    assert words_of(shown) == want, (tokens, shown, want)
    # The text heatmap colours each token with received --normalize minmax --reduce all.
    run("received", "--attn", tmp_path / "a.npy", "--normalize", "minmax", "--reduce", "all",
        "-o", tmp_path / "w.parquet")
    w = frame(tmp_path / "w.parquet").sort_values("position").score.to_numpy()
    w = (w - w.min()) / (w.max() - w.min())
    got = [float(x) for x in re.findall(r'title="([0-9.]+)"', body)]
    np.testing.assert_allclose(got, w, atol=6e-5)


# ---------------------------------------------------------------------------------------------
# C. LaTeX that compiles, whatever the tokens hold.

HOSTILE = ["[CLS]", "<", ">", "|", "~", "^", "\\", "{", "}", "$", "&", "#", "%", "_", "café",
           "Ñandú", "Łódź", "中文", "😀", "a\tb", "##x", "[SEP]"]


@pytest.mark.skipif(shutil.which("pdflatex") is None or shutil.which("pdftotext") is None,
                    reason="scripts/test.sh installs texlive and poppler-utils")
def test_latex_compiles_and_reads_back(tmp_path):
    S = len(HOSTILE)
    a = softmax(np.random.default_rng(3).normal(size=(1, 1, 1, S, S))).astype(np.float32)
    np.save(tmp_path / "a.npy", a)
    json.dump(HOSTILE, open(tmp_path / "tok.json", "w"), ensure_ascii=False)
    run("plot", "--attn", tmp_path / "a.npy", "--tokens", tmp_path / "tok.json", "--text",
        "-o", tmp_path / "x.tex")
    p = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "x.tex"],
                       cwd=tmp_path, capture_output=True, timeout=120)
    assert p.returncode == 0, p.stdout.decode()[-3000:]
    text = subprocess.run(["pdftotext", "x.pdf", "-"], cwd=tmp_path, capture_output=True,
                          check=True).stdout.decode()
    flat = " ".join(text.split())
    for shown in ["<", ">", "|", "~", "^", "\\", "{", "}", "$", "&", "#", "%", "_", "café",
                  "Ñandú", "Łódź", "U+4E2D", "U+6587", "U+1F600", "[SEP]"]:
        assert shown in flat, (shown, flat)
    assert "x" in flat and "##x" not in flat  # a WordPiece piece joins its word


# ---------------------------------------------------------------------------------------------
# D. Longformer without global tokens (x = 0).

def sliding_no_globals(rng, L=2, B=1, H=2, S=12, w=4):
    half = w // 2
    dense = np.zeros((L, B, H, S, S), np.float32)
    sliding = np.zeros((L, B, H, S, w + 1), np.float32)
    for q in range(S):
        keys = list(range(max(0, q - half), min(S, q + half + 1)))
        p = softmax(rng.normal(size=(L, B, H, len(keys))) * 2).astype(np.float32)
        dense[..., q, keys] = p
        for j, k in enumerate(keys):
            sliding[..., q, k - q + half] = p[..., j]
    return sliding, dense


@pytest.mark.parametrize("form", ["flag", "empty_global", "empty_global_and_mask"])
def test_longformer_without_globals_equals_the_banded_matrix(tmp_path, form):
    sliding, dense = sliding_no_globals(np.random.default_rng(23))
    np.save(tmp_path / "s.npy", sliding)
    np.save(tmp_path / "d.npy", dense)
    np.save(tmp_path / "g.npy", np.zeros(sliding.shape[:4] + (0,), np.float32))
    np.save(tmp_path / "gm.npy", np.zeros((1, sliding.shape[3]), np.int64))
    lf = {"flag": ["--sliding-window"],
          "empty_global": ["--global-attn", tmp_path / "g.npy"],
          "empty_global_and_mask": ["--global-attn", tmp_path / "g.npy", "--global-mask", tmp_path / "gm.npy"]}[form]
    run("dense", "--attn", tmp_path / "s.npy", *lf, "-o", tmp_path / "out.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), dense)
    for cmd, extra in (("topk", ["--all"]), ("received", []), ("headstats", [])):
        run(cmd, "--attn", tmp_path / "s.npy", *lf, *extra, "-o", tmp_path / f"{cmd}_lf.parquet")
        run(cmd, "--attn", tmp_path / "d.npy", *extra, "-o", tmp_path / f"{cmd}_d.parquet")
        got, want = pq.read_table(tmp_path / f"{cmd}_lf.parquet"), pq.read_table(tmp_path / f"{cmd}_d.parquet")
        assert got.to_pydict() == want.to_pydict(), cmd


def test_a_sliding_window_read_as_dense_gets_a_warning(tmp_path):
    sliding, _ = sliding_no_globals(np.random.default_rng(1))
    np.save(tmp_path / "s.npy", sliding)
    p = run("topk", "--attn", tmp_path / "s.npy", "-k", 2, "-o", tmp_path / "t.parquet")
    err = p.stderr.decode()
    assert err.startswith("warning: ") and "--sliding-window" in err and "--global-attn" in err
    assert "key axis (5)" in err and "query axis (12)" in err
    square = softmax(np.random.default_rng(2).normal(size=(1, 1, 1, 5, 5))).astype(np.float32)
    np.save(tmp_path / "q.npy", square)
    assert run("topk", "--attn", tmp_path / "q.npy", "-o", tmp_path / "q.parquet").stderr == b""


def test_shape_messages_are_true_of_their_shapes(tmp_path):
    rng = np.random.default_rng(4)
    np.save(tmp_path / "s.npy", rng.random((1, 1, 1, 6, 4), dtype=np.float32))  # w would be 3
    p = run("topk", "--attn", tmp_path / "s.npy", "--sliding-window", "-o", tmp_path / "t.parquet", ok=False)
    err = p.stderr.decode()
    assert p.returncode == 1
    assert "last dimension 4 is not x + w + 1 for x = 0 global slots" in err and "even window w ≥ 2" in err


# ---------------------------------------------------------------------------------------------
# E. Mask conventions: HF's attention_mask (1 = real) and PyTorch's key_padding_mask (True = pad).

def padded_batch():
    rng = np.random.default_rng(5)
    L, B, H, S = 2, 2, 2, 7
    lengths = [6, 4]  # both rows padded: an inverted mask then keeps some position of each
    a = np.zeros((L, B, H, S, S), np.float32)
    for b, n in enumerate(lengths):
        logits = rng.normal(size=(L, H, S, n))
        a[:, b, :, :, :n] = softmax(logits)  # padded keys get 0, padded queries attend too
    hf = np.array([[1] * n + [0] * (S - n) for n in lengths], np.int64)
    return a, hf


def test_padding_mask_is_the_pytorch_convention(tmp_path):
    a, hf = padded_batch()
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "hf.npy", hf)
    np.save(tmp_path / "pt.npy", hf == 0)
    run("topk", "--attn", tmp_path / "a.npy", "--attention-mask", tmp_path / "hf.npy", "-o", tmp_path / "hf.parquet")
    run("topk", "--attn", tmp_path / "a.npy", "--padding-mask", tmp_path / "pt.npy", "-o", tmp_path / "pt.parquet")
    assert frame(tmp_path / "hf.parquet").equals(frame(tmp_path / "pt.parquet"))
    t = frame(tmp_path / "hf.parquet")
    assert t[t.batch == 1].query_position.max() == 3


@pytest.mark.parametrize("flag,mask", [("--attention-mask", "pt"), ("--padding-mask", "hf")])
def test_an_inverted_mask_is_named(tmp_path, flag, mask):
    a, hf = padded_batch()
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "hf.npy", hf)
    np.save(tmp_path / "pt.npy", hf == 0)
    p = run("topk", "--attn", tmp_path / "a.npy", flag, tmp_path / f"{mask}.npy", "-o", tmp_path / "t.parquet", ok=False)
    err = p.stderr.decode()
    assert p.returncode == 1 and err.count("\n") == 1, err
    assert err.startswith(f"error: {tmp_path / mask}.npy: the mask looks inverted")
    assert "--padding-mask" in err and "--attention-mask" in err
    assert not (tmp_path / "t.parquet").exists()


# ---------------------------------------------------------------------------------------------
# F. Tensors of rank 0 and 1.

def test_melt_rank_0_and_1(tmp_path):
    np.save(tmp_path / "zero.npy", np.float32(0.25))
    run("melt", "--attn", tmp_path / "zero.npy", "--axes", "", "-o", tmp_path / "z.parquet")
    z = pq.read_table(tmp_path / "z.parquet")
    assert z.column_names == ["value"] and z.to_pydict() == {"value": [0.25]}
    v = np.arange(5, dtype=np.float64) / 4
    np.save(tmp_path / "one.npy", v)
    run("melt", "--attn", tmp_path / "one.npy", "--axes", "position", "-o", tmp_path / "o.parquet")
    o = pq.read_table(tmp_path / "o.parquet").to_pydict()
    assert o == {"position": [0, 1, 2, 3, 4], "value": list(v)}


def test_an_inverted_mask_is_named_when_padded_rows_are_zero(tmp_path):
    """HF Longformer zeroes padded queries' rows: the kept queries then attend nowhere."""
    a, hf = padded_batch()
    for b, n in enumerate(hf.sum(axis=1)):
        a[:, b, :, n:, :] = 0.0
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "pt.npy", hf == 0)
    p = run("topk", "--attn", tmp_path / "a.npy", "--attention-mask", tmp_path / "pt.npy",
            "-o", tmp_path / "t.parquet", ok=False)
    assert p.returncode == 1 and "the mask looks inverted" in p.stderr.decode()
    assert not (tmp_path / "t.parquet").exists()


def test_a_mask_that_keeps_nothing_is_named(tmp_path):
    """A batch without padding: its HF mask is all ones, so given as --padding-mask it drops
    every position."""
    a, _ = padded_batch()
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "ones.npy", np.ones((2, a.shape[3]), np.int64))
    p = run("received", "--attn", tmp_path / "a.npy", "--padding-mask", tmp_path / "ones.npy",
            "-o", tmp_path / "r.parquet", ok=False)
    err = p.stderr.decode()
    assert p.returncode == 1 and err.count("\n") == 1, err
    assert err.startswith(f"error: {tmp_path / 'ones.npy'}: the mask keeps no position of batch row 0")
    assert not (tmp_path / "r.parquet").exists()


def test_usage_errors_are_one_line(tmp_path):
    for args in (["topk", "--attn", "a.npy", "-k", "0", "-o", "t.parquet"],
                 ["topk", "--attn", "a.npy", "--attention-mask", "m.npy", "--padding-mask", "m.npy", "-o", "t.csv"],
                 ["melt", "--attn", "a.npy", "-o", "x.csv"]):
        p = run(*args, ok=False)
        err = p.stderr.decode()
        assert p.returncode == 2 and err.count("\n") == 1 and err.startswith("error: "), err
