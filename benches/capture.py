"""Capture against the workflow it replaces (issue 16's targets), on BERT-base shapes (12 layers,
12 heads, hidden 768; random weights from a config), batches of 8 x 512 tokens, topk k=10 +
received + headstats:

- forward:  the forward passes alone, eager attention, no attentions returned (the baseline);
- capture:  the same passes under af.capture, frames written to Parquet;
- saved:    output_attentions=True -> torch.stack -> .numpy() -> np.save per batch, then the
            CLI's topk, received and headstats over the saved files (a dataset run each).

Each side runs in a fresh process; its peak RSS is the process's (the CLI's own peaks for the
saved workflow's second half). Targets: capture's peak RSS <= forward's + 2 x one layer's
attention (100 MB) + 200 MB; capture's time <= 1.25 x forward's; the saved workflow's time
>= 2 x capture's.

    .venv/bin/python benches/capture.py [--batches 4] [--batch-size 8] [--seq 512] [--bin PATH]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


def model_and_batches(args):
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(num_hidden_layers=12, num_attention_heads=12, hidden_size=768,
                        intermediate_size=3072, max_position_embeddings=args.seq,
                        attn_implementation="eager")
    model = BertModel(config).eval()
    g = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(args.batches):
        ids = torch.randint(1000, config.vocab_size, (args.batch_size, args.seq), generator=g)
        mask = torch.ones_like(ids)
        mask[1::2, args.seq * 3 // 4:] = 0  # half the rows padded to 3/4 length
        batches.append({"input_ids": ids, "attention_mask": mask})
    return model, batches


def side(args):
    """One side, in this process: prints {"seconds": ...} (the timed part only)."""
    import torch

    torch.set_num_threads(os.cpu_count())
    model, batches = model_and_batches(args)
    out = args.out
    if args.side == "capture":
        import attnframes as af  # imported before the clock starts, as the model is built
    start = time.perf_counter()
    if args.side == "forward":
        with torch.no_grad():
            for b in batches:
                model(**b)
    elif args.side == "capture":
        with af.capture(model, topk=dict(k=10, out=f"{out}/topk/"),
                        received=dict(normalize="minmax", out=f"{out}/received/"),
                        headstats=dict(out=f"{out}/headstats/")) as cap:
            for b in batches:
                cap(**b)
    else:
        import numpy as np

        os.makedirs(f"{out}/saved")
        with torch.no_grad():
            for i, b in enumerate(batches):
                o = model(**b, output_attentions=True)
                np.save(f"{out}/saved/b{i}.npy", torch.stack(o.attentions).numpy())
                np.save(f"{out}/saved/b{i}.mask.npy", b["attention_mask"].numpy())
                del o
    print(json.dumps({"seconds": time.perf_counter() - start}))


def measured(cmd):
    """Runs `cmd`: its stdout, seconds and peak RSS in MB (the child's own, from wait4)."""
    start = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = p.stdout.read(), p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    seconds = time.perf_counter() - start
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"{cmd[:4]} failed:\n{stderr}")
    return stdout, seconds, usage.ru_maxrss / 1024


def run_side(args, name, out):
    cmd = [sys.executable, __file__, "--side", name, "--out", out, "--batches", str(args.batches),
           "--batch-size", str(args.batch_size), "--seq", str(args.seq)]
    stdout, _, peak = measured(cmd)
    return json.loads(stdout.splitlines()[-1])["seconds"], peak


def cli_over_saved(binary, out, batches):
    """The CLI's three commands over the saved batches: seconds and the largest peak RSS."""
    seconds, peak = 0.0, 0.0
    files = [f"{out}/saved/b{i}.npy" for i in range(batches)]
    for command, flags in (("topk", ["-k", "10"]), ("received", ["--normalize", "minmax"]),
                           ("headstats", [])):
        # One mask serves every batch: each has the same padding.
        cmd = [binary, command, "--attn", *files,
               "--attention-mask", f"{out}/saved/b0.mask.npy", "--example-id-from", "index",
               "--quiet", *flags, "-o", f"{out}/cli_{command}/"]
        _, s, rss = measured(cmd)
        seconds, peak = seconds + s, max(peak, rss)
    return seconds, peak


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--side")
    ap.add_argument("--out")
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--bin", default=os.environ.get("ATTNFRAMES_BIN",
                                                    "target/release/attnframes"))
    args = ap.parse_args()
    if args.side:
        return side(args)
    work = tempfile.mkdtemp(prefix="capture-bench-", dir=os.environ.get("TMPDIR", "/var/tmp"))
    try:
        rows = {}
        for name in ("forward", "capture", "saved"):
            rows[name] = run_side(args, name, f"{work}/{name}")
        cli_s, cli_rss = cli_over_saved(args.bin, f"{work}/saved", args.batches)
        layer_mb = args.batch_size * 12 * args.seq ** 2 * 4 / 1e6
        fwd_s, fwd_rss = rows["forward"]
        cap_s, cap_rss = rows["capture"]
        save_s, save_rss = rows["saved"]
        print(f"BERT-base shapes, {args.batches} batches of {args.batch_size} x {args.seq}, "
              f"{os.cpu_count()} cores; one layer's attention {layer_mb:.0f} MB")
        print(f"{'workflow':<44}{'seconds':>10}{'peak RSS MB':>14}")
        print(f"{'forward passes alone (no attentions)':<44}{fwd_s:>10.1f}{fwd_rss:>14.0f}")
        print(f"{'af.capture: topk + received + headstats':<44}{cap_s:>10.1f}{cap_rss:>14.0f}")
        print(f"{'output_attentions -> stack -> np.save':<44}{save_s:>10.1f}{save_rss:>14.0f}")
        print(f"{'  then the CLI x 3 over the saved files':<44}{cli_s:>10.1f}{cli_rss:>14.0f}")
        print(f"capture adds {100 * (cap_s / fwd_s - 1):.1f} % to the forward passes (target <= 25 %)")
        print(f"capture's peak RSS is {cap_rss - fwd_rss:+.0f} MB over the forward passes' "
              f"(target <= {2 * layer_mb + 200:.0f} MB)")
        print(f"the saved workflow takes {(save_s + cli_s) / cap_s:.2f}x capture's time "
              f"(target >= 2x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
