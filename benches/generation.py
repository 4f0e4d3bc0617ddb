"""Live capture of generation against generate() alone and against output_attentions=True
(issue 21's targets): a TinyLlama-shaped random model (hidden 768, 12 layers, 12 heads, 4 KV
heads, ~124 M parameters, built from a config), prompt 256, 128 new tokens, batch 4, greedy:

- generate:  model.generate alone, eager attention, no attentions returned (the baseline);
- capture:   the same call as cap.generate with a topk k=10 stream to a Parquet dataset;
- saved:     generate(output_attentions=True, return_dict_in_generate=True), then every step's
             layers stacked and saved with np.savez.

Each side runs in a fresh process; peak RSS from wait4. Targets: capture's time <= 1.15 x
generate's; its peak RSS <= generate's + 200 MB.

    .venv/bin/python benches/generation.py [--prompt 256] [--new 128] [--batch 4]
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from capture import measured


def model_and_prompt(args):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=32000, hidden_size=768, intermediate_size=2048,
                         num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=4,
                         max_position_embeddings=args.prompt + args.new, pad_token_id=0,
                         attn_implementation="eager")
    model = LlamaForCausalLM(config).eval()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(100, config.vocab_size, (args.batch, args.prompt), generator=g)
    return model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def side(args):
    import torch

    torch.set_num_threads(os.cpu_count())
    model, prompt = model_and_prompt(args)
    options = dict(max_new_tokens=args.new, min_new_tokens=args.new, do_sample=False)
    if args.side == "capture":
        import attnframes as af  # imported before the clock starts, as the model is built
    start = time.perf_counter()
    if args.side == "generate":
        with torch.no_grad():
            model.generate(**prompt, **options)
    elif args.side == "capture":
        with af.capture(model, topk=dict(k=10, out=f"{args.out}/topk/")) as cap:
            cap.generate(**prompt, **options)
    else:
        import numpy as np

        with torch.no_grad():
            out = model.generate(**prompt, **options, output_attentions=True,
                                 return_dict_in_generate=True)
        os.makedirs(args.out)
        for step, layers in enumerate(out.attentions):
            np.savez(f"{args.out}/step{step}.npz", torch.stack(layers).numpy())
    print(json.dumps({"seconds": time.perf_counter() - start}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--side")
    ap.add_argument("--out")
    ap.add_argument("--prompt", type=int, default=256)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()
    if args.side:
        return side(args)
    work = tempfile.mkdtemp(prefix="generation-bench-", dir=os.environ.get("TMPDIR", "/var/tmp"))
    try:
        rows = {}
        for name in ("generate", "capture", "saved"):
            cmd = [sys.executable, __file__, "--side", name, "--out", f"{work}/{name}",
                   "--prompt", str(args.prompt), "--new", str(args.new), "--batch", str(args.batch)]
            stdout, _, peak = measured(cmd)
            rows[name] = (json.loads(stdout.splitlines()[-1])["seconds"], peak)
        print(f"TinyLlama shapes (random weights), batch {args.batch}, prompt {args.prompt}, "
              f"{args.new} new tokens, {os.cpu_count()} cores")
        print(f"{'workflow':<52}{'seconds':>10}{'peak RSS MB':>14}")
        labels = {"generate": "generate() alone (eager, no attentions)",
                  "capture": "cap.generate with topk k=10 to Parquet",
                  "saved": "output_attentions=True, then np.savez of every step"}
        for name, (s, r) in rows.items():
            print(f"{labels[name]:<52}{s:>10.1f}{r:>14.0f}")
        (g, gr), (c, cr) = rows["generate"], rows["capture"]
        print(f"capture adds {100 * (c / g - 1):.1f} % to generate's time (target <= 15 %)")
        print(f"capture's peak RSS is {cr - gr:+.0f} MB over generate's (target <= 200 MB)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
