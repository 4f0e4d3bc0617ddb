"""Attention saved the way people save it — torch.save of a tensor, a tuple, a list or a dict,
f16/bf16, views, encoder-decoder outputs; per-layer arrays in .npz and .safetensors — written
here by real torch and safetensors, read value for value as torch.load reads them, and giving
every command the frames of the same data saved with np.save."""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("ATTNFRAMES_BIN", str(ROOT / "target" / "release" / "attnframes"))

L, B, H, S = 4, 2, 3, 6


def run(*args):
    p = subprocess.run([BIN, *map(str, args)], capture_output=True)
    assert p.returncode == 0, p.stderr.decode()
    return p


def attention(*shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(*shape, generator=g), dim=-1)


LAYERS = tuple(attention(B, H, S, S, seed=l) for l in range(L))
ENCDEC = {
    "encoder_attentions": tuple(attention(B, H, S, S, seed=10 + l) for l in range(2)),
    "decoder_attentions": tuple(attention(B, H, 4, 4, seed=20 + l) for l in range(2)),
    "cross_attentions": tuple(attention(B, H, 4, S, seed=30 + l) for l in range(2)),
}


def as_stacked(obj, key):
    """What torch.load gives, as the one (L, B, H, Q, K) float32 array attnframes reads."""
    if isinstance(obj, dict):
        obj = obj[key or "attentions"]
    if isinstance(obj, (tuple, list)):
        obj = torch.stack(list(obj))
    return obj.float().numpy()


def save_torch(path, obj):
    torch.save(obj, path)
    return path


# name -> (write(dir) -> path, --attn-key)
FORMS = {
    "stacked": (lambda d: save_torch(d / "a.pt", torch.stack(LAYERS)), None),
    "tuple": (lambda d: save_torch(d / "a.pt", LAYERS), None),
    "list": (lambda d: save_torch(d / "a.pth", list(LAYERS)), None),
    "dict": (lambda d: save_torch(d / "a.bin", {"attentions": LAYERS, "input_ids": torch.zeros(B, S, dtype=torch.long)}), None),
    "f16": (lambda d: save_torch(d / "a.pt", tuple(a.half() for a in LAYERS)), None),
    "bf16": (lambda d: save_torch(d / "a.pt", tuple(a.bfloat16() for a in LAYERS)), None),
    "f64": (lambda d: save_torch(d / "a.pt", torch.stack(LAYERS).double()), None),
    "view": (lambda d: save_torch(d / "a.pt", torch.stack(LAYERS + LAYERS)[2:6, :, 1:3]), None),
    "transposed": (lambda d: save_torch(d / "a.pt", torch.stack(LAYERS).transpose(-1, -2)), None),
    "encoder": (lambda d: save_torch(d / "a.pt", ENCDEC), "encoder_attentions"),
    "decoder": (lambda d: save_torch(d / "a.pt", ENCDEC), "decoder_attentions"),
}


def melt_values(path, key, ndim=5):
    out = path.parent / "m.parquet"
    args = ["melt", "--attn", path, "--axes", ",".join(f"a{i}" for i in range(ndim)), "-o", out]
    if key:
        args += ["--attn-key", key]
    run(*args)
    t = pq.read_table(out).to_pandas()
    shape = tuple(int(t[f"a{i}"].max()) + 1 for i in range(ndim))
    got = np.zeros(shape, dtype=np.float64)
    got[tuple(t[f"a{i}"].to_numpy().astype(np.int64) for i in range(ndim))] = t["value"].to_numpy()
    return got


@pytest.mark.parametrize("form", list(FORMS) + ["cross"])
def test_values_are_those_torch_load_reads(tmp_path, form):
    if form == "cross":
        path, key = save_torch(tmp_path / "a.pt", ENCDEC), "cross_attentions"
    else:
        write, key = FORMS[form]
        path = write(tmp_path)
    want = as_stacked(torch.load(path), key)
    got = melt_values(path, key)
    assert got.shape == want.shape
    assert np.array_equal(got, want.astype(np.float64))


def per_layer_files(d):
    arrays = [a.numpy() for a in LAYERS]
    np.savez(d / "layers.npz", *arrays)
    save_file({f"layer_{l}": a for l, a in enumerate(LAYERS)}, d / "layers.safetensors")
    return {"npz": (d / "layers.npz", "arr_*"), "safetensors": (d / "layers.safetensors", "layer_*")}


def test_per_layer_arrays_stack_in_natural_order(tmp_path):
    # 12 layers, so that natural order (arr_2 before arr_10) differs from sorting by name.
    many = [np.full((1, 1, 2, 2), l, dtype=np.float32) for l in range(12)]
    np.savez(tmp_path / "many.npz", *many)
    got = melt_values(tmp_path / "many.npz", "arr_*")
    assert np.array_equal(got, np.stack(many).astype(np.float64))
    for name, (path, key) in per_layer_files(tmp_path).items():
        assert np.array_equal(melt_values(path, key), np.stack([a.numpy() for a in LAYERS]).astype(np.float64)), name
        p = subprocess.run([BIN, "topk", "--attn", path, "-o", tmp_path / "t.parquet"], capture_output=True)
        err = p.stderr.decode()
        assert p.returncode == 1 and len(err.strip().splitlines()) == 1, err
        assert f"--attn-key '{key}'" in err, err


COMMANDS = [["topk", "-k", "3"], ["received", "--normalize", "minmax"], ["headstats"], ["rollout", "-k", "2"]]


@pytest.mark.parametrize("form", list(FORMS) + ["npz", "safetensors"])
def test_every_command_gives_the_np_save_frames(tmp_path, form):
    if form in ("npz", "safetensors"):
        path, key = per_layer_files(tmp_path)[form]
        want = np.stack([a.numpy() for a in LAYERS])
    else:
        write, key = FORMS[form]
        path = write(tmp_path)
        want = as_stacked(torch.load(path), key)
    ref = tmp_path / "ref.npy"
    np.save(ref, want)
    key_args = ["--attn-key", key] if key else []
    for cmd in COMMANDS:
        a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
        run(*cmd, "--attn", ref, "-o", a)
        run(*cmd, "--attn", path, *key_args, "-o", b)
        assert pq.read_table(a).equals(pq.read_table(b)), (form, cmd)
    ja = json.loads(run("inspect", "--json", ref).stdout)[0]
    jb = json.loads(run("inspect", "--json", *key_args, path).stdout)[0]
    for k in ("dtype", "shape", "layout", "nan", "inf", "row_sums"):
        if k == "dtype" and form in ("f16", "bf16", "f64"):
            continue
        assert ja[k] == jb[k], (form, k)
    assert jb["format"] in ("pytorch", "npz", "safetensors")


def test_legacy_and_foreign_pickles_are_one_line(tmp_path):
    legacy = tmp_path / "legacy.pt"
    torch.save(torch.stack(LAYERS), legacy, _use_new_zipfile_serialization=False)
    module = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), module)
    for path, want in ((legacy, "legacy torch.save file"), (module, "torch.nn.modules.linear.Linear")):
        p = subprocess.run([BIN, "topk", "--attn", path, "-o", tmp_path / "t.parquet"], capture_output=True)
        err = p.stderr.decode()
        assert p.returncode == 1 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
        assert want in err and "np.save" in err, err
        assert not (tmp_path / "t.parquet").exists()
