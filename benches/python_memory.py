"""af.topk on an in-memory array against the CLI on the same data saved as .npy (issue 15's
target): the process's resident memory plus the system's shared memory (where an in-memory
file would live) may grow by at most 300 MB beyond the array itself, and the wall time stays
within 1.2x of the CLI's.

    .venv/bin/python benches/python_memory.py bench-data/dense2048/attn.npy [attnframes binary]

Prints one line per measurement: the CLI (best of 3 runs, process start included), the call
writing Parquet, the call returning the frame, and the growth of RSS + Shmem during the call
(sampled every 5 ms, peak over the call, above the level with the array loaded).
"""
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

import attnframes as af


def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) / 1024


def shmem_mb():
    with open("/proc/meminfo") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("Shmem:")) / 1024


def peak_growth(call):
    """Seconds of `call` and the peak of RSS + Shmem above the level before it, in MB."""
    base = rss_mb() + shmem_mb()
    peak, done = [base], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb() + shmem_mb())
            time.sleep(0.005)

    t = threading.Thread(target=sample)
    t.start()
    t0 = time.perf_counter()
    call()
    seconds = time.perf_counter() - t0
    done.set()
    t.join()
    return seconds, max(peak[0], rss_mb() + shmem_mb()) - base


def best_of(n, call):
    return min(peak_growth(call)[0] for _ in range(n))


def main():
    path = sys.argv[1]
    binary = sys.argv[2] if len(sys.argv) > 2 else os.environ.get(
        "ATTNFRAMES_BIN", "target/release/attnframes")
    out = tempfile.mkdtemp()
    cli = lambda: subprocess.run([binary, "--quiet", "topk", "--attn", path, "-k", "10", "-o",
                                  f"{out}/cli.parquet"], check=True)
    cli()
    cli_s = best_of(3, cli)
    arr = np.load(path)  # the array in memory, as a model's output would be
    af.topk(arr, k=10, out=f"{out}/warm.parquet")
    file_s, file_mb = peak_growth(lambda: af.topk(arr, k=10, out=f"{out}/py.parquet"))
    file_s = min(file_s, best_of(2, lambda: af.topk(arr, k=10, out=f"{out}/py.parquet")))
    frame = []
    mem_s, mem_mb = peak_growth(lambda: frame.append(af.topk(arr, k=10)))
    frame.clear()
    mem_s = min(mem_s, best_of(2, lambda: frame.append(af.topk(arr, k=10))))
    print(f"array {arr.shape} {arr.dtype}: {arr.nbytes / 2**20:.0f} MB")
    print(f"CLI topk -k 10 on the .npy (Parquet)      {cli_s:7.3f} s")
    print(f"af.topk(array, k=10, out=...parquet)      {file_s:7.3f} s  {file_s / cli_s:.2f}x of the CLI"
          f"  RSS+Shmem +{file_mb:.0f} MB")
    print(f"af.topk(array, k=10) -> polars            {mem_s:7.3f} s  {mem_s / cli_s:.2f}x of the CLI"
          f"  RSS+Shmem +{mem_mb:.0f} MB ({frame[0].height:,} rows)")


if __name__ == "__main__":
    main()
