"""`attnframes view` in a real browser: Debian's chromium (never a downloaded one) driven by
Playwright for Python. The page's numbers are read back from the DOM and compared with the
frames `topk` writes and the weights `plot --text` writes."""
import json
import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from playwright.sync_api import sync_playwright
from view_page import ARGS, chromium_path, measure, open_head, open_page

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("ATTNFRAMES_BIN", str(ROOT / "target" / "release" / "attnframes"))
FIX = ROOT / "tests" / "fixtures"
MINI = FIX / "minilm"
LF = FIX / "longformer_single"
# The layout of the head canvas (view.js): 720 × 720 CSS pixels, labels left and top.
CANVAS, ML, MT, PAD = 720, 84, 84, 6


def run(*args):
    p = subprocess.run([BIN, *map(str, args)], capture_output=True)
    assert p.returncode == 0, p.stderr.decode()
    return p


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        path = chromium_path()
        if path is None:
            pytest.fail("chromium is not installed (scripts/test.sh installs Debian's package)")
        b = p.chromium.launch(executable_path=path, args=ARGS, headless=True)
        yield b
        b.close()


def listed_topk(page):
    return page.eval_on_selector_all(
        "#topk li", "els => els.map(e => [Number(e.dataset.position), Number(e.dataset.score)])")


def expected_topk(frame, b, l, h, q):
    m = ((frame["batch"] == b) & (frame["layer"] == l) & (frame["head"] == h)
         & (frame["query_position"] == q))
    rows = frame[m].sort_values("rank")
    return rows["position"].to_numpy(), rows["score"].to_numpy()


def check_query(page, frame, b, l, h, q):
    got = listed_topk(page)
    assert got, f"no top-k listed for query {q}"
    pos, score = expected_topk(frame, b, l, h, q)
    np.testing.assert_array_equal([g[0] for g in got], pos)
    # The page stores scores as float16.
    np.testing.assert_allclose([g[1] for g in got], score, rtol=1e-3, atol=1e-7)


def test_view_topk_matches_topk_frame(tmp_path, browser):
    common = ["--attn", MINI / "attentions.npy", "--tokens", MINI / "tokens.json",
              "--attention-mask", MINI / "attention_mask.npy"]
    html = tmp_path / "view.html"
    run("view", *common, "-k", 5, "-o", html)
    run("topk", *common, "-k", 5, "-o", tmp_path / "topk.parquet")
    frame = pq.read_table(tmp_path / "topk.parquet").to_pandas()
    mask = np.load(MINI / "attention_mask.npy")
    errors = []
    page = open_page(browser, html, errors)
    open_head(page, 1, 2)
    # Hovering a query token in the text lists its keys.
    for q in np.flatnonzero(mask[0])[[0, 3, -1]]:
        page.hover(f"#text .tok[data-pos='{q}']")
        assert page.get_attribute("#topk", "data-query") == str(q)
        check_query(page, frame, 0, 1, 2, int(q))
    # Hovering a row of the heatmap does the same.
    box = page.locator("#head").bounding_box()
    nq = int(mask[0].sum())
    s = min((CANVAS - ML - PAD) / nq, (CANVAS - MT - PAD) / nq)
    for i in (1, 6):
        x = box["x"] + (ML + 0.5 * s) * box["width"] / CANVAS
        y = box["y"] + (MT + (i + 0.5) * s) * box["height"] / CANVAS
        page.mouse.move(x, y)
        q = int(np.flatnonzero(mask[0])[i])
        assert page.get_attribute("#topk", "data-query") == str(q)
        check_query(page, frame, 0, 1, 2, q)
    # The top-k keys are highlighted in the text.
    highlighted = page.eval_on_selector_all("#text .tok.hl", "els => els.map(e => +e.dataset.pos)")
    assert sorted(highlighted) == sorted(p for p, _ in listed_topk(page))
    # Another batch row (padded differently), another head.
    page.select_option("#batch", "2")
    page.wait_for_selector("#head[data-open='1-2']")
    open_head(page, 0, 1)
    for q in np.flatnonzero(mask[2])[[0, -1]]:
        page.hover(f"#text .tok[data-pos='{q}']")
        check_query(page, frame, 2, 0, 1, int(q))
    assert errors == []


def text_weights_of_plot(path):
    spans = re.findall(r'<span class="tok" style="background-color: rgba\(255, 0, 0, [0-9.]+\)"'
                       r' title="([0-9.]+)">', path.read_text(encoding="utf-8"))
    return np.array([float(w) for w in spans])


def page_text_weights(page):
    got = page.eval_on_selector_all(
        "#text .tok", "els => els.map(e => [Number(e.dataset.pos), Number(e.dataset.w)])")
    got.sort()
    return [p for p, _ in got], np.array([w for _, w in got])


@pytest.mark.parametrize("case", ["minilm", "longformer"])
def test_view_text_colours_match_plot_text(tmp_path, browser, case):
    if case == "minilm":
        common = ["--attn", MINI / "attentions.npy", "--tokens", MINI / "tokens.json",
                  "--attention-mask", MINI / "attention_mask.npy"]
    else:
        common = ["--attn", LF / "attentions.npy", "--global-attn", LF / "global_attentions.npy",
                  "--global-mask", LF / "global_attention_mask.npy",
                  "--attention-mask", LF / "attention_mask.npy", "--tokens", LF / "tokens.json"]
    html = tmp_path / "view.html"
    run("view", *common, "-o", html)
    run("plot", *common, "--text", "-o", tmp_path / "text.html")
    expected = text_weights_of_plot(tmp_path / "text.html")
    errors = []
    page = open_page(browser, html, errors)
    positions, weights = page_text_weights(page)
    assert len(weights) == len(expected)
    np.testing.assert_allclose(weights, expected, atol=6e-5)
    # One head only: the page's "open head only" against plot --text --layers 1 --heads 2.
    run("plot", *common, "--text", "--layers", "1", "--heads", "2", "-o", tmp_path / "text1.html")
    open_head(page, 1, 2)
    page.click("#text-open")
    _, weights = page_text_weights(page)
    np.testing.assert_allclose(weights, text_weights_of_plot(tmp_path / "text1.html"), atol=6e-5)
    # Words follow the --words rule: windowsill's pieces sit in one word.
    if case == "minilm":
        word = page.eval_on_selector_all(
            "#text .word", "ws => ws.map(w => w.textContent)")
        assert "windowsill" in word
    assert errors == []


def nonblank_fraction(png_path):
    im = np.asarray(Image.open(png_path).convert("RGB")).astype(np.int16)
    # Cells that differ from the canvas background (#eee) and from white.
    bg = np.array([238, 238, 238])
    far = np.abs(im - bg).sum(axis=2) > 30
    return far.mean(), im.reshape(-1, 3).std(axis=0).max()


def test_view_screenshot_has_heatmaps(tmp_path, browser):
    html = tmp_path / "view.html"
    run("view", "--attn", MINI / "attentions.npy", "--tokens", MINI / "tokens.json",
        "--attention-mask", MINI / "attention_mask.npy", "-o", html)
    errors = []
    page = open_page(browser, html, errors)
    page.select_option("#frame-by", "entropy_norm")
    open_head(page, 1, 0)
    page.hover("#text .tok[data-pos='2']")
    page.locator("#head").screenshot(path=tmp_path / "head.png")
    page.locator("#grid").screenshot(path=tmp_path / "grid.png")
    frac, spread = nonblank_fraction(tmp_path / "head.png")
    assert frac > 0.4 and spread > 20, (frac, spread)
    frac, spread = nonblank_fraction(tmp_path / "grid.png")
    assert frac > 0.3 and spread > 20, (frac, spread)
    # The whole page, kept for the README when asked.
    shot = tmp_path / "view.png"
    page.screenshot(path=shot, full_page=False)
    if os.environ.get("ATTNFRAMES_SCREENSHOT"):
        Image.open(shot).convert("RGB").quantize(colors=128).save(
            os.environ["ATTNFRAMES_SCREENSHOT"], optimize=True)
    assert errors == []


def test_view_stats_table_sorts_and_opens_heads(tmp_path, browser):
    html = tmp_path / "view.html"
    run("view", "--attn", MINI / "attentions.npy", "--tokens", MINI / "tokens.json", "-o", html)
    run("headstats", "--attn", MINI / "attentions.npy", "--tokens", MINI / "tokens.json",
        "-o", tmp_path / "hs.parquet")
    hs = pq.read_table(tmp_path / "hs.parquet").to_pandas()
    hs = hs[hs["batch"] == 0]
    errors = []
    page = open_page(browser, html, errors)
    cols = page.eval_on_selector_all("#stats th", "ths => ths.map(t => t.textContent)")
    assert cols == list(hs.columns)
    page.click("#stats th:text-is('entropy')")  # descending first
    first = page.eval_on_selector("#stats tbody tr", "tr => [...tr.children].map(td => td.textContent)")
    top = hs.sort_values("entropy", ascending=False).iloc[0]
    assert (int(first[1]), int(first[2])) == (int(top["layer"]), int(top["head"]))
    page.click("#stats tbody tr")
    page.wait_for_selector(f"#head[data-open='{int(top['layer'])}-{int(top['head'])}']")
    assert errors == []


def write_longformer(d, L=2, H=2, S=4096, w=512, seed=0):
    """A Longformer-shaped input (HF layout, one global token at position 0) of S tokens."""
    rng = np.random.default_rng(seed)
    half = w // 2
    sl = np.zeros((L, 1, H, S, w + 2), np.float32)
    gl = np.zeros((L, 1, H, S, 1), np.float32)
    q = np.arange(S)[:, None]
    key = q - half + np.arange(w + 1)[None, :]
    for l in range(L):
        for h in range(H):
            z = rng.standard_normal((S, w + 2)) * 2.5
            z[:, 0] += 3.0
            win = z[:, 1:]
            win[(key < 0) | (key >= S) | (key == 0)] = -np.inf
            e = np.exp(z - z.max(axis=1, keepdims=True))
            p = e / e.sum(axis=1, keepdims=True)
            p[0] = 0
            sl[l, 0, h] = p
            g = np.exp(rng.standard_normal(S) * 2.5)
            gl[l, 0, h, :, 0] = g / g.sum()
    np.save(d / "sliding.npy", sl)
    np.save(d / "global.npy", gl)
    words = ["the", "model", "reads", "long", "document", "##s", ",", "."]
    tokens = ["[CLS]"] + [words[i % len(words)] for i in range(S - 2)] + ["[SEP]"]
    (d / "tokens.json").write_text(json.dumps(tokens))


def test_view_4096_tokens_within_targets(tmp_path, browser):
    write_longformer(tmp_path)
    html = tmp_path / "view.html"
    t = time.perf_counter()
    run("view", "--attn", tmp_path / "sliding.npy", "--global-attn", tmp_path / "global.npy",
        "--tokens", tmp_path / "tokens.json", "-o", html)
    seconds = time.perf_counter() - t
    size = html.stat().st_size
    first_paint, opens, errors = measure(browser, html, [(0, 0), (1, 1), (0, 1)])
    print(f"4096 tokens, 2 x 2 heads: {size / 1e6:.2f} MB written in {seconds:.2f} s, "
          f"first paint {first_paint:.0f} ms, head opens {[round(o) for o in opens]} ms")
    assert errors == []
    assert size <= 40e6 * 4 / 144  # the 40 MB target for 144 heads, per head
    assert first_paint <= 2000
    assert max(opens) <= 300
