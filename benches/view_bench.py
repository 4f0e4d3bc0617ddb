"""Benchmark of `attnframes view`: write time, file size, first paint and head-open time in
headless Chromium (Debian's /usr/bin/chromium through Playwright; nothing is downloaded).

    .venv/bin/python benches/view_bench.py [--data bench-data] [--bin target/release/attnframes]
                                           [--only bert512,lf4096] [--gen ../shared/bench/gen_inputs.py]

Inputs missing from --data are made with gen_inputs.py (lf4096 is 1.2 GB). First paint is the
page's own `performance.now()` when the overview, text and table are drawn (navigation start =
0, so parsing the file is included); a head open is the time from the click to the drawn
heatmap and top-k, the median of several heads. Prints a Markdown table.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "interop"))
from view_page import ARGS, chromium_path, measure  # noqa: E402
TARGETS = {"lf4096": (40e6, 2000, 300, 10), "bert512": (8e6, None, None, None)}


def inputs(name, d):
    if name == "bert512":
        return ["--attn", d / "attn.npy", "--tokens", d / "tokens.json"]
    return ["--attn", d / "sliding.npy", "--global-attn", d / "global.npy",
            "--tokens", d / "tokens.json"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT / "bench-data"))
    ap.add_argument("--bin", default=os.environ.get("ATTNFRAMES_BIN", str(ROOT / "target/release/attnframes")))
    ap.add_argument("--only", default="bert512,lf4096")
    ap.add_argument("--gen", default=str(ROOT.parent / "shared/bench/gen_inputs.py"))
    ap.add_argument("--runs", type=int, default=3, help="browser loads per input")
    ap.add_argument("--keep", help="directory to keep the pages in")
    a = ap.parse_args()
    data = Path(a.data)
    names = a.only.split(",")
    missing = [n for n in names if not (data / n / "tokens.json").exists()]
    if missing:
        subprocess.run([sys.executable, a.gen, "--out", str(data), "--only", ",".join(missing)], check=True)
    out_dir = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="view-bench-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    chromium = chromium_path()
    if not chromium:
        sys.exit("chromium is not installed (apt-get install chromium)")
    rows = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=ARGS, headless=True)
        for name in names:
            html = out_dir / f"{name}.html"
            t = time.perf_counter()
            subprocess.run([a.bin, "--quiet", "view", *map(str, inputs(name, data / name)), "-o", str(html)],
                           check=True)
            seconds = time.perf_counter() - t
            size = html.stat().st_size
            paints, opens = [], []
            for _ in range(a.runs):
                paint, head_opens, errors = measure(browser, html, [(0, 0), (5, 7), (11, 11), (3, 2)],
                                                    timeout_ms=120_000)
                if errors:
                    sys.exit(f"{name}: console errors: {errors}")
                paints.append(paint)
                opens.extend(head_opens)
            rows.append((name, size, seconds, statistics.median(paints), statistics.median(opens), max(opens)))
        browser.close()
    print("| input | HTML file | write | first paint (median) | a head opens (median / max) |")
    print("| --- | --- | --- | --- | --- |")
    for name, size, seconds, paint, open_med, open_max in rows:
        print(f"| {name} | {size / 1e6:.1f} MB | {seconds:.2f} s | {paint:.0f} ms | "
              f"{open_med:.0f} / {open_max:.0f} ms |")
    bad = []
    for name, size, seconds, paint, _, open_max in rows:
        mb, fp, ho, ws = TARGETS.get(name, (None,) * 4)
        if mb and size > mb:
            bad.append(f"{name}: {size / 1e6:.1f} MB > {mb / 1e6:.0f} MB")
        if fp and paint > fp:
            bad.append(f"{name}: first paint {paint:.0f} ms > {fp} ms")
        if ho and open_max > ho:
            bad.append(f"{name}: head open {open_max:.0f} ms > {ho} ms")
        if ws and seconds > ws:
            bad.append(f"{name}: write {seconds:.1f} s > {ws} s")
    print("targets met" if not bad else "targets missed: " + "; ".join(bad))


if __name__ == "__main__":
    main()
