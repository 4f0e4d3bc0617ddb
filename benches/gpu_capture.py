"""Capture on a GPU (issue 22's targets), BERT-base shapes (12 layers, 12 heads, hidden 768;
random weights from a config), eager attention, batches of 8 x 512 tokens (half the rows
padded to 384), topk k=10 + received (min-max) + headstats to Parquet, fp32 and bf16:

- forward:  the forward passes alone (no attentions returned), the baseline;
- device:   af.capture with reductions on the device (topk and received copy (B,H,Q,k) ranked
            keys and (B,H,K) sums; headstats gets a pinned copy of each layer), the frames
            built by a worker thread at most two layers behind;
- copy:     af.capture(device_reductions=False): every stream gets a pinned copy of each layer;
- device-received, device-topk1: the device path with received alone, or topk k=1 alone, to
            show how the cost follows the rows written.

Each run first warms up (a forward pass; a capture of one batch, which compiles or loads the
Triton kernel: about 1 s once per process), then times the forward passes until they return (the model's own time with capture
attached) and until every frame is written (close()); CUDA is synchronized first. GPU memory
is torch.cuda.max_memory_allocated over the run. Per-layer costs of the device functions are
timed with CUDA events. Targets: capture adds at most 30 % (fp32) / 50 % (bf16) to the forward
passes; no attention tensor is copied to the host for topk and received; the GPU peak is at
most the forward's own plus two layers of attention.

    python benches/gpu_capture.py [--batches 10] [--json out.json] [--tests]

``--tests`` first runs python/tests/test_device.py (every test on CUDA tensors too).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


def model_and_batches(args, dtype):
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(num_hidden_layers=12, num_attention_heads=12, hidden_size=768,
                        intermediate_size=3072, max_position_embeddings=args.seq,
                        attn_implementation="eager")
    model = BertModel(config).eval().to("cuda", dtype)
    g = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(args.batches):
        ids = torch.randint(1000, config.vocab_size, (args.batch_size, args.seq), generator=g)
        mask = torch.ones_like(ids)
        mask[1::2, args.seq * 3 // 4:] = 0
        batches.append({"input_ids": ids.cuda(), "attention_mask": mask.cuda()})
    return model, batches


def run(args, dtype, side, out):
    import torch

    import attnframes as af

    model, batches = model_and_batches(args, dtype)
    with torch.no_grad():  # warm-up: kernels chosen, allocator filled
        model(**batches[0])
    if side != "forward":  # and Triton's kernel compiled or loaded, once per process (~1 s)
        warm = tempfile.mkdtemp(prefix="gpu-warm-")
        with af.capture(model, device_reductions=True, topk=dict(k=1, as_arrow=True),
                        received=dict(as_arrow=True),
                        headstats=dict(out=os.path.join(warm, "h.parquet"))) as cap:
            cap(**batches[0])
        shutil.rmtree(warm, ignore_errors=True)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    if side == "forward":
        with torch.no_grad():
            for b in batches:
                model(**b)
        torch.cuda.synchronize()
        forward_done = time.perf_counter()
    else:
        streams = dict(topk=dict(k=10, out=os.path.join(out, "topk/")),
                       received=dict(normalize="minmax", out=os.path.join(out, "received/")),
                       headstats=dict(out=os.path.join(out, "headstats.parquet")))
        if side == "device-received":
            streams = dict(received=streams["received"])
        elif side == "device-topk1":
            streams = dict(topk=dict(streams["topk"], k=1))
        cap = af.capture(model, device_reductions=(side != "copy"), **streams)
        for b in batches:
            cap(**b)
        torch.cuda.synchronize()
        forward_done = time.perf_counter()
        cap.close()
    done = time.perf_counter()
    return {"forward_s": forward_done - start, "total_s": done - start,
            "gpu_peak_mb": torch.cuda.max_memory_allocated() / 2**20}


def layer_costs(args, dtype):
    """Milliseconds per layer of each device function on one (8, 12, 512, 512) layer."""
    import torch

    from attnframes import _device

    g = torch.Generator(device="cuda").manual_seed(0)
    shape = (args.batch_size, 12, args.seq, args.seq)
    attn = torch.rand(shape, generator=g, device="cuda").softmax(-1).to(dtype)
    valid = torch.ones((args.batch_size, args.seq), dtype=torch.bool, device="cuda")
    valid[1::2, args.seq * 3 // 4:] = False

    def timed(f, reps=20):
        f()
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        for _ in range(reps):
            f()
        end.record()
        torch.cuda.synchronize()
        return begin.elapsed_time(end) / reps

    host = torch.empty(shape, dtype=dtype, pin_memory=True)
    return {
        "topk_k10_ms": timed(lambda: _device.topk(attn, 10, valid_keys=valid)),
        "received_sums_ms": timed(lambda: _device.received_sums(attn, valid_queries=valid)),
        "first_non_finite_ms": timed(lambda: _device.first_non_finite(attn, valid)),
        "copy_to_pinned_ms": timed(lambda: host.copy_(attn, non_blocking=True)),
        "layer_mb": attn.numel() * attn.element_size() / 2**20,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--json", help="also write the figures here")
    p.add_argument("--tests", action="store_true", help="run test_device.py on the GPU first")
    p.add_argument("--side", help=argparse.SUPPRESS)
    p.add_argument("--dtype", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    import torch

    if args.side:  # one measurement, in a fresh process
        dtype = getattr(torch, args.dtype)
        print(json.dumps(run(args, dtype, args.side, args.out)))
        return
    if args.tests:
        tests = os.path.join(os.path.dirname(__file__), "..", "python", "tests", "test_device.py")
        code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                tests])
        print(f"test_device.py on {torch.cuda.get_device_name()}: exit {code}", flush=True)
    figures = {"device": torch.cuda.get_device_name(), "batches": args.batches}
    for name in ("float32", "bfloat16"):
        dtype = getattr(torch, name)
        row = {"per_layer": layer_costs(args, dtype)}
        for side in ("forward", "device", "copy", "device-received", "device-topk1"):
            out = tempfile.mkdtemp(prefix=f"gpu-{side}-")
            cmd = [sys.executable, __file__, "--side", side, "--dtype", name, "--out", out,
                   "--batches", str(args.batches), "--batch-size", str(args.batch_size),
                   "--seq", str(args.seq)]
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                sys.exit(f"{side} {name} failed:\n{result.stderr}")
            row[side] = json.loads(result.stdout.strip().splitlines()[-1])
            shutil.rmtree(out, ignore_errors=True)
        base = row["forward"]["total_s"]
        for side in ("device", "copy", "device-received", "device-topk1"):
            row[side]["forward_overhead"] = row[side]["forward_s"] / base - 1
            row[side]["total_overhead"] = row[side]["total_s"] / base - 1
        figures[name] = row
        print(json.dumps({name: row}, indent=1), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
