"""Driving a page of `attnframes view` in Debian's chromium through Playwright (never a
downloaded browser): shared by tests/interop/test_view.py and benches/view_bench.py."""
import shutil
import time
from pathlib import Path

# As root and offline: no sandbox, no GPU, and none of the background connections that this
# machine's closed network would refuse.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_path():
    """The system Chromium, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def open_page(browser, html, errors, timeout_ms=60_000):
    """Opens `html` and waits until the page has drawn; console errors go to `errors`."""
    page = browser.new_page(viewport={"width": 1700, "height": 1500})
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(Path(html).resolve().as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=timeout_ms)
    return page


def open_head(page, layer, head):
    page.click(f"canvas.thumb[data-layer='{layer}'][data-head='{head}']")
    page.wait_for_selector(f"#head[data-open='{layer}-{head}']", timeout=30_000)


def wait_for_open(page, timeout=60.0):
    """The page's time for the last head open, once set (polled from here: the page's
    Content-Security-Policy forbids the string evaluation `wait_for_function` uses)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ms = page.evaluate("window.afView.lastOpenMs")
        if ms is not None:
            return ms
        page.wait_for_timeout(5)
    raise TimeoutError("the head did not open")


def measure(browser, html, heads, timeout_ms=60_000):
    """(first paint in ms, the open time of each of `heads` in ms, console errors)."""
    errors = []
    page = open_page(browser, html, errors, timeout_ms)
    first_paint = page.evaluate("window.afView.firstPaintMs")
    opens = []
    for layer, head in heads:
        page.evaluate("window.afView.lastOpenMs = null")
        open_head(page, layer, head)
        opens.append(wait_for_open(page))
    page.close()
    return first_paint, opens, errors
