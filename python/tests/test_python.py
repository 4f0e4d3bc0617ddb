"""The Python package against the CLI: same frames, same errors; datasets and Dask."""
import json
import os
import subprocess
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import attnframes as af

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("ATTNFRAMES_BIN", str(ROOT / "target" / "release" / "attnframes"))
FIX = ROOT / "tests" / "fixtures" / "minilm"
ATTN, TOKENS, MASK = FIX / "attentions.npy", FIX / "tokens.json", FIX / "attention_mask.npy"


def cli(tmp_path, *args):
    out = tmp_path / "cli.parquet"
    p = subprocess.run([BIN, *map(str, args), "-o", str(out)], capture_output=True)
    assert p.returncode == 0, p.stderr.decode()
    return pl.read_parquet(out)


def same(a: pl.DataFrame, b: pl.DataFrame):
    cast = lambda df: df.with_columns(pl.col(pl.Categorical).cast(pl.String))
    assert a.schema.names() == b.schema.names()
    assert cast(a).equals(cast(b))


def test_topk_returns_the_cli_frame(tmp_path):
    df = af.topk(ATTN, tokens=TOKENS, attention_mask=MASK, k=5)
    assert isinstance(df, pl.DataFrame)
    same(df, cli(tmp_path, "topk", "--attn", ATTN, "--tokens", TOKENS, "--attention-mask", MASK, "-k", 5))
    assert df.schema["rank"] == pl.UInt32 and df.schema["layer"] == pl.UInt16


def test_received_as_arrow(tmp_path):
    tbl = af.received(ATTN, normalize="minmax", reduce="heads", as_arrow=True)
    assert isinstance(tbl, pa.Table)
    same(pl.from_arrow(tbl), cli(tmp_path, "received", "--attn", ATTN, "--normalize", "minmax", "--reduce", "heads"))


def test_numpy_arrays_and_token_lists_are_inputs(tmp_path):
    a = np.load(ATTN)
    tokens = json.loads(TOKENS.read_text())
    from_array = af.topk(a, tokens=tokens, attention_mask=np.load(MASK), k=3, layers="1-2")
    same(from_array, af.topk(ATTN, tokens=TOKENS, attention_mask=MASK, k=3, layers="1-2"))
    # Another layout: the array transposed to (B, L, H, Q, K).
    same(af.topk(np.ascontiguousarray(a.transpose(1, 0, 2, 3, 4)), layout="BLHQK", k=3),
         af.topk(a, k=3))


TORCH = ROOT / "tests" / "fixtures" / "torch"


def test_pytorch_files_and_per_layer_arrays_are_inputs(tmp_path):
    # torch.save files (a tuple of per-layer tensors, a dict, a view) and per-layer .npz /
    # .safetensors give the frames of the same data saved with np.save.
    want = af.topk(TORCH / "expected.npy", k=2)
    for path, key in ((TORCH / "tuple.pt", None), (TORCH / "dict.pt", "attentions"),
                      (TORCH / "per_layer.npz", "arr_*"), (TORCH / "per_layer.safetensors", "layer_*")):
        same(af.topk(path, attn_key=key, k=2), want)
    same(af.received(TORCH / "encdec.pt", attn_key="cross_attentions"),
         af.received(TORCH / "expected_cross.npy"))
    # A dataset of .pt files.
    (tmp_path / "pt").mkdir()
    for stem in ("a", "b"):
        (tmp_path / "pt" / f"{stem}.pt").write_bytes((TORCH / "tuple.pt").read_bytes())
    assert af.topk(str(tmp_path / "pt" / "*.pt"), k=2)["example_id"].unique().sort().to_list() == ["a", "b"]
    with pytest.raises(ValueError, match="names fractions.Fraction"):
        af.topk(TORCH / "bad_class.pt")


def test_errors_name_the_python_parameter():
    with pytest.raises(OSError, match="no such file"):
        af.topk("/no/such/file.npy")
    with pytest.raises(ValueError, match="^k must be at least 1$"):
        af.topk(ATTN, k=0)
    with pytest.raises(TypeError, match="topk\\(\\) got an unexpected keyword argument 'nonsense'"):
        af.topk(ATTN, nonsense=1)
    with pytest.raises(TypeError, match="^k: "):
        af.topk(ATTN, k="five")
    with pytest.raises(ValueError, match="^normalize: expected one of 'none', 'minmax'; got 'z'$"):
        af.received(ATTN, normalize="z")
    with pytest.raises(ValueError, match="^percentile 120 is not within 0..100$"):
        af.similarity(ATTN, attributions=FIX / "attributions.npy", percentile=120)
    with pytest.raises(ValueError, match="^<attention_mask array>: the mask keeps no position of batch row 0; HF.s attention_mask \\(attention_mask\\)"):
        af.topk(ATTN, attention_mask=np.zeros((3, 20), dtype=np.int64))
    with pytest.raises(ValueError, match="<attn array>"):
        af.topk(np.zeros((2, 3), dtype=np.int32))


def make_examples(d: Path, n: int):
    (d / "attn").mkdir(parents=True)
    (d / "tokens").mkdir()
    rng = np.random.default_rng(7)
    for i in range(n):
        s = 6 + i % 5
        a = rng.random((2, 1, 2, s, s), dtype=np.float32)
        a /= a.sum(-1, keepdims=True)
        np.save(d / "attn" / f"ex{i:02d}.npy", a)
        (d / "tokens" / f"ex{i:02d}.json").write_text(json.dumps([f"t{p}" for p in range(s)]))


def dataset_rows(out: Path):
    return duckdb.sql(
        f"SELECT example_id, CAST(layer AS INTEGER) AS layer, head, query_position, position, token, rank, score "
        f"FROM read_parquet('{out}/**/*.parquet', hive_partitioning = true) ORDER BY ALL").fetchall()


def test_dataset_out_and_shards(tmp_path):
    make_examples(tmp_path, 6)
    glob = str(tmp_path / "attn" / "*.npy")
    assert af.topk(glob, tokens_dir=tmp_path / "tokens", k=2, out=str(tmp_path / "whole") + "/",
                   partition_by=["layer"]) is None
    for i in range(3):
        af.topk(glob, tokens_dir=tmp_path / "tokens", k=2, out=str(tmp_path / "sharded") + "/",
                partition_by=["layer"], shard=(i, 3))
    whole = dataset_rows(tmp_path / "whole")
    assert len(whole) == sum(2 * 2 * (6 + i % 5) * 2 for i in range(6))
    assert dataset_rows(tmp_path / "sharded") == whole
    # In memory, the same rows.
    mem = af.topk(glob, tokens_dir=tmp_path / "tokens", k=2)
    assert mem.height == len(whole) and mem["example_id"].n_unique() == 6


def test_dask_local_cluster_writes_one_dataset(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    make_examples(tmp_path, 40)
    glob = str(tmp_path / "attn" / "*.npy")
    out = str(tmp_path / "dask") + "/"
    n = 8

    def shard(i):
        af.topk(glob, tokens_dir=str(tmp_path / "tokens"), k=3, out=out,
                partition_by=["layer"], shard=(i, n), threads=1)
        return i

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        assert sorted(client.gather(client.map(shard, range(n)))) == list(range(n))
    assert (tmp_path / "dask" / "_SUCCESS").exists()
    af.topk(glob, tokens_dir=tmp_path / "tokens", k=3, out=str(tmp_path / "single") + "/",
            partition_by=["layer"])
    assert dataset_rows(tmp_path / "dask") == dataset_rows(tmp_path / "single")
    parts = pq.ParquetDataset(str(tmp_path / "dask")).files
    assert len(parts) == 2 * n  # one part per layer per shard


def test_signatures_docstrings_and_the_stub():
    import inspect

    sig = inspect.signature(af.topk)
    assert list(sig.parameters)[:4] == ["attn", "k", "all", "nonzero"]
    assert sig.parameters["k"].default == 10 and sig.parameters["k"].kind is inspect.Parameter.KEYWORD_ONLY
    assert "attention_mask : str | os.PathLike[str] | numpy.ndarray | None" in af.topk.__doc__
    assert "Raises" in af.received.__doc__ and "OSError" in af.received.__doc__
    package = Path(af.__file__).parent
    assert (package / "py.typed").exists()
    assert (package / "__init__.pyi").read_text() == af._stub() + "\n"


def test_arrays_in_place_and_token_lists_in_metadata(tmp_path):
    a = np.load(ATTN)
    out = tmp_path / "t.parquet"
    af.topk(a, tokens=json.loads(TOKENS.read_text()), k=2, out=out)
    meta = json.loads(pq.read_metadata(out).metadata[b"attnframes"])
    assert meta["inputs"]["attn"] == "<attn array>" and meta["inputs"]["tokens"] == "<tokens list>"
    # Every array option is read in place, and named in the metadata and messages.
    attributions = np.load(FIX / "attributions.npy")
    same(af.similarity(a, attributions=attributions, attention_mask=np.load(MASK)),
         af.similarity(ATTN, attributions=FIX / "attributions.npy", attention_mask=MASK))
    af.topk(ATTN, attention_mask=np.load(MASK), head_importance=np.load(FIX / "head_importance.npy"),
            k=2, out=out)
    meta = json.loads(pq.read_metadata(out).metadata[b"attnframes"])
    assert meta["inputs"]["attention_mask"] == "<attention_mask array>"
    assert meta["inputs"]["head_importance"] == "<head_importance array>"
    # A view that is not C-contiguous is made contiguous first; float16 is read as is.
    same(af.topk(a[:, :, ::2], k=2), af.topk(np.ascontiguousarray(a[:, :, ::2]), k=2))
    same(af.topk(np.load(FIX / "attentions_f16.npy"), k=2),
         cli(tmp_path, "topk", "--attn", FIX / "attentions_f16.npy", "-k", 2))


def test_torch_cpu_tensors_are_read_like_numpy_arrays():
    torch = pytest.importorskip("torch")
    a = np.load(ATTN)
    same(af.topk(torch.from_numpy(a), k=3, layers=[0, 5]), af.topk(a, k=3, layers="0,5"))


def saved_batches(d: Path, n: int):
    """n batches of random attention (2 rows each, lengths varying), saved as files too."""
    (d / "attn").mkdir(parents=True)
    (d / "tokens").mkdir()
    rng = np.random.default_rng(3)
    batches = []
    for i in range(n):
        s = 5 + 2 * i
        a = rng.random((2, 2, 3, s, s), dtype=np.float32)
        a /= a.sum(-1, keepdims=True)
        tokens = [[f"w{i}_{r}_{p}" for p in range(s)] for r in range(2)]
        np.save(d / "attn" / f"b{i}.npy", a)
        (d / "tokens" / f"b{i}.json").write_text(json.dumps(tokens))
        batches.append((a, tokens))
    return batches


@pytest.mark.parametrize("command,options", [
    ("topk", {"k": 3}), ("received", {"normalize": "minmax"}), ("headstats", {}),
])
def test_stream_equals_the_cli_dataset_run(tmp_path, command, options):
    batches = saved_batches(tmp_path, 3)
    with af.stream(command, **options) as s:
        for a, tokens in batches:
            s.add(a, tokens=tokens)
    flags = [x for k, v in options.items() for x in (("-k", v) if k == "k" else (f"--{k}", v))]
    want = cli(tmp_path, command, "--attn", *sorted((tmp_path / "attn").glob("*.npy")),
               "--tokens-dir", tmp_path / "tokens", "--example-id-from", "index", *flags)
    same(s.result, want)
    assert s.result["example_id"].unique(maintain_order=True).to_list()[:2] == ["0:0", "0:1"]


def test_stream_to_a_dataset_and_failure_leaves_nothing(tmp_path):
    batches = saved_batches(tmp_path, 2)
    out = tmp_path / "ds"
    with af.stream("topk", k=2, out=str(out) + "/", partition_by=["layer"]) as s:
        for i, (a, tokens) in enumerate(batches):
            s.add(torch_or_numpy(a), tokens=tokens, example_ids=[f"ex{i}a", f"ex{i}b"])
    assert (out / "_SUCCESS").exists()
    rows = duckdb.sql(f"SELECT DISTINCT example_id FROM read_parquet('{out}/**/*.parquet') ORDER BY 1").fetchall()
    assert [r[0] for r in rows] == ["ex0a", "ex0b", "ex1a", "ex1b"]
    with pytest.raises(RuntimeError):
        with af.stream("topk", k=2, out=tmp_path / "t.parquet") as s:
            s.add(batches[0][0])
            raise RuntimeError("the model failed")
    assert not list(tmp_path.glob("t.parquet*")) and not list(tmp_path.glob(".t.parquet*"))
    with pytest.raises(ValueError, match="^example_ids: 1 ids for a batch of 2 rows$"):
        with af.stream("received") as s:
            s.add(batches[0][0], example_ids=["one"])
    with pytest.raises(TypeError, match="unexpected keyword argument 'tokens'"):
        af.stream("topk", tokens=["a"])


def torch_or_numpy(a):
    try:
        import torch
    except ImportError:
        return a
    return torch.from_numpy(a)


def test_values_found_by_trying_the_package_as_a_user():
    with pytest.raises(ValueError, match="^input_ids needs vocab$"):
        af.topk(ATTN, input_ids=FIX / "input_ids.npy")
    same(af.topk(ATTN, k=2, layers=np.array([0, 1])), af.topk(ATTN, k=2, layers="0,1"))
    with pytest.raises(ValueError, match="^layers: -1 is negative"):
        af.topk(ATTN, layers=[-1])
    with pytest.raises(ValueError, match="^k: -1 is out of range$"):
        af.topk(ATTN, k=-1)
    with pytest.raises(TypeError, match="^tokens: "):
        af.topk(ATTN, tokens=5)
    with pytest.raises(ValueError, match="^row_group_size must be at least 1$"):
        af.topk(ATTN, row_group_size=0)
    with pytest.raises(ValueError, match="^max_detail 0 is not within 16 and 4096$"):
        af.view(ATTN, out="v.html", max_detail=0)
    lf = ROOT / "tests" / "fixtures" / "longformer_single"
    with pytest.raises(ValueError, match="^global_attn/sliding_window: "):
        af.topk([lf / "attentions.npy"] * 2, global_attn=lf / "global_attentions.npy")


def test_ctrl_c_stops_a_long_call_and_leaves_nothing(tmp_path):
    import signal
    import threading
    import time

    rng = np.random.default_rng(5)
    a = rng.random((4, 1, 12, 512, 512), dtype=np.float32)
    out = tmp_path / "all.parquet"
    t0 = time.perf_counter()
    af.topk(a, all=True, threads=1, row_group_size=50_000)
    whole = time.perf_counter() - t0
    timer = threading.Timer(whole / 4, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        af.topk(a, all=True, threads=1, row_group_size=50_000, out=out)
    assert time.perf_counter() - t0 < whole
    assert list(tmp_path.iterdir()) == []


def test_a_generation_step_is_the_last_position():
    # generate()'s steps after the prompt: (L, B, H, 1, P + t), the query being the last one.
    a = np.random.default_rng(4).random((2, 1, 2, 1, 5), dtype=np.float32)
    assert af.topk(a, k=1)["query_position"].unique().to_list() == [4]
    assert af.topk(a, k=1, query_offset=2)["query_position"].unique().to_list() == [2]
    assert af.topk(a, k=1, cross_attention=True)["query_position"].unique().to_list() == [0]
    tokens = [f"t{i}" for i in range(5)]
    assert af.topk(a, k=1, tokens=tokens)["query_token"].unique().to_list() == ["t4"]
    with pytest.raises(ValueError, match="query_offset and cross_attention: give one"):
        af.topk(a, query_offset=1, cross_attention=True)
    with pytest.raises(ValueError, match="query_offset 5: 1 queries from position 5 pass the 5 keys"):
        af.topk(a, query_offset=5)
