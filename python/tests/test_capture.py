"""Capture from tiny transformers models built from configs (random weights, no downloads):
each stream's frames equal the CLI's over the same model's `output_attentions`, saved."""
import json
import subprocess

import duckdb
import numpy as np
import polars as pl
import pytest

import attnframes as af
from test_python import BIN, same

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

STREAMS = {"topk": {"k": 3}, "received": {"normalize": "minmax"}, "headstats": {},
           "rollout": {"k": 4}}
SMALL = dict(hidden_size=32, num_attention_heads=4, intermediate_size=64)


def bert():
    return transformers.BertModel(transformers.BertConfig(
        vocab_size=60, num_hidden_layers=3, max_position_embeddings=64,
        attn_implementation="eager", **SMALL))


def gpt2():
    return transformers.GPT2Model(transformers.GPT2Config(
        vocab_size=60, n_layer=2, n_head=4, n_embd=32, n_positions=64,
        attn_implementation="eager"))


def llama():
    return transformers.LlamaModel(transformers.LlamaConfig(
        vocab_size=60, num_hidden_layers=2, num_key_value_heads=2, max_position_embeddings=64,
        attn_implementation="eager", **SMALL))


def distilbert():
    return transformers.DistilBertModel(transformers.DistilBertConfig(
        vocab_size=60, n_layers=2, n_heads=4, dim=32, hidden_dim=64,
        max_position_embeddings=64, attn_implementation="eager"))


def vit():
    return transformers.ViTModel(transformers.ViTConfig(
        image_size=16, patch_size=4, num_channels=3, num_hidden_layers=2,
        attn_implementation="eager", **SMALL))


def longformer():
    return transformers.LongformerModel(transformers.LongformerConfig(
        vocab_size=60, num_hidden_layers=2, attention_window=4, max_position_embeddings=40,
        pad_token_id=1, **SMALL))


def longformer_batches():
    """Global tokens (one per row, then two in one row) and padding, as the model pads each
    batch to a multiple of its window."""
    g = torch.Generator().manual_seed(2)
    first = {"input_ids": torch.randint(5, 60, (2, 10), generator=g),
             "attention_mask": torch.tensor([[1] * 10, [1] * 7 + [0] * 3]),
             "global_attention_mask": torch.tensor([[1] + [0] * 9] * 2)}
    second = {"input_ids": torch.randint(5, 60, (2, 7), generator=g),
              "attention_mask": torch.ones(2, 7, dtype=torch.long),
              "global_attention_mask": torch.tensor([[1, 0, 0, 1, 0, 0, 0], [1] + [0] * 6])}
    return [first, second]


def text_batches(seed=0):
    """Two batches of different lengths, the second padded on the right."""
    g = torch.Generator().manual_seed(seed)
    first = {"input_ids": torch.randint(5, 60, (2, 9), generator=g),
             "attention_mask": torch.ones(2, 9, dtype=torch.long)}
    second = {"input_ids": torch.randint(5, 60, (3, 6), generator=g),
              "attention_mask": torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 5 + [0]])}
    return [first, second]


def image_batches():
    g = torch.Generator().manual_seed(1)
    return [{"pixel_values": torch.randn(2, 3, 16, 16, generator=g)},
            {"pixel_values": torch.randn(1, 3, 16, 16, generator=g)}]


def tokenizer():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","] + [f"w{i}" for i in range(53)]
    return transformers.BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})


def cli_over_saved(tmp_path, model, batches, command, options, tok=None):
    """The CLI over each batch's `output_attentions`, stacked and saved with np.save, with its
    mask and tokens: one run per batch, `example_id` i:row added as a dataset run adds it."""
    frames = []
    for i, encoding in enumerate(batches):
        with torch.no_grad():
            out = model(**encoding, output_attentions=True)
        d = tmp_path / f"saved{i}"
        d.mkdir(exist_ok=True)
        np.save(d / "attn.npy", torch.stack(out.attentions).numpy())
        args = [BIN, command, "--attn", d / "attn.npy", "-o", d / f"{command}.parquet"]
        if getattr(out, "global_attentions", None) is not None:
            np.save(d / "global.npy", torch.stack(out.global_attentions).numpy())
            np.save(d / "global_mask.npy", encoding["global_attention_mask"].numpy())
            args += ["--global-attn", d / "global.npy", "--global-mask", d / "global_mask.npy"]
        if "attention_mask" in encoding:
            np.save(d / "mask.npy", encoding["attention_mask"].numpy())
            args += ["--attention-mask", d / "mask.npy"]
        if tok is not None:
            tokens = [tok.convert_ids_to_tokens(r) for r in encoding["input_ids"].tolist()]
            (d / "tokens.json").write_text(json.dumps(tokens))
            args += ["--tokens", d / "tokens.json"]
        for k, v in options.items():
            args += ["-k", v] if k == "k" else [f"--{k}", v]
        p = subprocess.run([str(a) for a in args], capture_output=True)
        assert p.returncode == 0, p.stderr.decode()
        df = pl.read_parquet(d / f"{command}.parquet")
        label = pl.lit(f"{i}:") + pl.col("batch").cast(pl.String) if df["batch"].max() > 0 \
            or len(next(iter(encoding.values()))) > 1 else pl.lit(str(i))
        frames.append(df.select(label.alias("example_id"), pl.all()))
    return pl.concat(frames)


@pytest.mark.parametrize("build", [bert, gpt2, llama, distilbert, vit, longformer])
def test_capture_equals_the_cli_over_saved_output_attentions(tmp_path, build):
    torch.manual_seed(0)
    model = build().eval()
    batches = {vit: image_batches, longformer: longformer_batches}.get(build, text_batches)()
    tok = tokenizer() if build is bert else None
    with af.capture(model, tokenizer=tok, **{c: dict(o) for c, o in STREAMS.items()}) as cap:
        for encoding in batches:
            cap(**encoding)
    for command, options in STREAMS.items():
        want = cli_over_saved(tmp_path, model, batches, command, options, tok)
        same(cap.results[command], want)
    if tok is not None:
        assert cap.results["topk"]["token"].cast(pl.String).str.starts_with("w").any()


def test_capture_writes_datasets_and_a_failure_leaves_nothing(tmp_path):
    model = bert().eval()
    out = tmp_path / "frames"
    with af.capture(model, topk=dict(k=2, out=f"{out}/topk/", partition_by=["layer"]),
                    headstats=dict(out=out / "headstats.parquet")) as cap:
        for i, encoding in enumerate(text_batches()):
            cap(**encoding, example_ids=[f"doc{i}_{r}" for r in range(len(encoding["input_ids"]))])
    assert (out / "topk" / "_SUCCESS").exists()
    assert sorted(p.name for p in (out / "topk").glob("layer=*")) == ["layer=00", "layer=01", "layer=02"]
    ids = pl.read_parquet(out / "headstats.parquet")["example_id"].unique().sort().to_list()
    assert ids == ["doc0_0", "doc0_1", "doc1_0", "doc1_1", "doc1_2"]

    failed = tmp_path / "failed"
    with pytest.raises(RuntimeError, match="the data loader failed"):
        with af.capture(model, topk=dict(out=f"{failed}/topk/"),
                        received=dict(out=failed / "received.parquet")) as cap:
            cap(**text_batches()[0])
            raise RuntimeError("the data loader failed")
    assert not failed.exists() or not any(failed.rglob("*"))
    # The hooks are gone: the model runs as before.
    model(**text_batches()[0])


def test_fused_attention_and_bad_layers_are_errors(tmp_path):
    sdpa = transformers.BertModel(transformers.BertConfig(
        vocab_size=60, num_hidden_layers=2, attn_implementation="sdpa", **SMALL)).eval()
    with pytest.raises(ValueError, match='attn_implementation="eager"'):
        af.capture(sdpa, topk=dict())
    # Named modules skip the check; the hook finds the missing weights.
    names = [f"encoder.layer.{i}.attention.self" for i in range(2)]
    with pytest.raises(ValueError, match="'sdpa' returns no weights"):
        with af.capture(sdpa, modules=names, topk=dict()) as cap:
            cap(**text_batches()[0])
    model = bert().eval()
    reversed_names = [f"encoder.layer.{i}.attention.self" for i in (2, 1, 0)]
    with pytest.raises(ValueError, match="^layer 2 of batch 0: .* out of order: expected layer 0"):
        with af.capture(model, modules=reversed_names, topk=dict()) as cap:
            cap(**text_batches()[0])
    with pytest.raises(TypeError, match="unexpected keyword argument 'rollup'"):
        af.capture(model, rollup=dict())
    with pytest.raises(ValueError, match="has no module 'encoder.nope'"):
        af.capture(model, modules=["encoder.nope"], topk=dict())


def test_stream_by_layer_equals_the_whole_batch_and_checks_each_layer():
    rng = np.random.default_rng(5)
    batches = []
    for s in (5, 7):
        a = rng.random((3, 2, 2, s, s), dtype=np.float32)
        batches.append(a / a.sum(-1, keepdims=True))
    for (command, options), layers in zip([*STREAMS.items()] * 2, [None] * 4 + ["1,2"] * 4):
        with af.stream(command, layers=layers, **options) as whole:
            for a in batches:
                whole.add(a)
        with af.stream(command, layers=layers, num_layers=3, **options) as by_layer:
            for a in batches:
                for layer in range(3):
                    by_layer.add(a[layer], layer=layer)
        same(by_layer.result, whole.result)
    with af.stream("topk", layers="2", num_layers=3) as s:
        for layer in range(3):
            s.add(batches[0][layer], layer=layer)
    assert s.result["layer"].unique().to_list() == [2]

    a = batches[0]
    cases = [
        (lambda s: s.add(a[1], layer=1), "^layer 1 of batch 0: the layers of a batch arrive in order: expected layer 0$"),
        (lambda s: (s.add(a[0], layer=0), s.add(a[1][:1], layer=1)), r"^layer 1 of batch 0: \(B, H, Q, K\) = \(1, 2, 5, 5\) but layer 0 had \(2, 2, 5, 5\)$"),
        (lambda s: (s.add(a[0], layer=0), s.add(a[1][:, :1], layer=1)), r"^layer 1 of batch 0: \(B, H, Q, K\) = \(2, 1, 5, 5\)"),
        (lambda s: s.add(a, layer=0), "^layer 0 of batch 0: .*names 4 axes but the tensor has 5"),
        (lambda s: s.add(a[0], layer=0, tokens=[["x"] * 4] * 2), "^layer 0 of batch 0: .*tokens"),
        (lambda s: [s.add(a[l], layer=l) for l in range(3)] + [s.add(a[l], layer=l) for l in range(2)] + [s.close()],
         "^layer 2 of batch 1: missing: the batch ended after 2 of 3 layers$"),
    ]
    for run, message in cases:
        with pytest.raises(ValueError, match=message):
            with af.stream("received") as s:
                run(s)


def test_dask_workers_capture_their_shards_into_one_dataset(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    from distributed.diagnostics.plugin import WorkerPlugin

    g = torch.Generator().manual_seed(7)
    texts = torch.randint(5, 60, (12, 8), generator=g).tolist()  # 12 "texts" of 8 token ids
    out, n = str(tmp_path / "dask") + "/", 3

    class LoadModel(WorkerPlugin):
        """Each worker builds the model once (the same weights everywhere: one seed)."""

        def setup(self, worker):
            torch.manual_seed(0)
            torch.set_num_threads(1)
            worker.model = transformers.BertModel(transformers.BertConfig(
                vocab_size=60, num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
                intermediate_size=64, attn_implementation="eager")).eval()

    def capture(model, rows, first, target, shard=None):
        with af.capture(model, topk=dict(k=2, out=target, partition_by=["layer"], shard=shard,
                                         threads=1)) as cap:
            for j in range(0, len(rows), 2):
                ids = torch.tensor(rows[j:j + 2])
                cap(input_ids=ids, attention_mask=torch.ones_like(ids),
                    example_ids=[f"text{first + j + r}" for r in range(len(ids))])

    def capture_shard(i):
        mine = slice(i * len(texts) // n, (i + 1) * len(texts) // n)
        capture(distributed.get_worker().model, texts[mine], mine.start, out, shard=(i, n))
        return i

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        client.register_plugin(LoadModel())
        assert sorted(client.gather(client.map(capture_shard, range(n)))) == list(range(n))
    assert (tmp_path / "dask" / "_SUCCESS").exists()
    torch.manual_seed(0)
    single = transformers.BertModel(transformers.BertConfig(
        vocab_size=60, num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
        intermediate_size=64, attn_implementation="eager")).eval()
    capture(single, texts, 0, str(tmp_path / "single") + "/")
    read = lambda d: duckdb.sql(
        f"SELECT example_id, layer, head, query_position, rank, position, score "
        f"FROM read_parquet('{d}/**/*.parquet') ORDER BY ALL").fetchall()
    assert read(tmp_path / "dask") == read(tmp_path / "single")


def test_what_a_new_user_ran_into(tmp_path):
    """Findings of trying the package as a new user: each one a clear error or the right rows."""
    a = np.random.default_rng(9).random((3, 2, 2, 4, 4), dtype=np.float32)
    # An add that raises leaves no trace, and the stream goes on.
    with af.stream("topk", k=1) as s:
        with pytest.raises(ValueError, match="example_ids: 1 ids for a batch of 2 rows"):
            s.add(a[0], layer=0, example_ids=["x"])
        for layer in range(3):
            s.add(a[layer], layer=layer, example_ids=["p", "q"] if layer == 0 else None)
    assert s.result["example_id"].unique().sort().to_list() == ["p", "q"]
    with af.stream("topk", num_layers=2) as s, pytest.raises(
            ValueError, match="^layer 2 of batch 0: num_layers is 2: the layers are 0..1$"):
        for layer in range(3):
            s.add(a[layer], layer=layer)
    with pytest.raises(ValueError, match="^tokens: a batch's tokens come with its layer 0"):
        with af.stream("topk") as s:
            s.add(a[0], layer=0)
            s.add(a[1], layer=1, tokens=[["t"] * 4] * 2)
    with pytest.raises(TypeError, match="example_ids: one id per batch row"):
        with af.stream("topk") as s:
            s.add(a, example_ids="ab")
    with af.stream("topk", k=1) as s:
        s.add(a, example_ids=torch.tensor([10, 11]))
    assert s.result["example_id"].unique().sort().to_list() == ["10", "11"]
    # What a stream cannot take is refused before any batch.
    with pytest.raises(ValueError, match="k must be at least 1"):
        af.stream("topk", k=0)
    for command, extra in [("headstats", "pairs"), ("rollout", "relevance")]:
        with pytest.raises(TypeError, match=f"unexpected keyword argument '{extra}'"):
            af.stream(command, **{extra: tmp_path / "extra.parquet"})
    with pytest.raises(ValueError, match="num_layers must be at least 1"):
        af.stream("topk", num_layers=0)
    # An output no batch reached has the command's columns.
    with af.stream("topk", out=tmp_path / "none.parquet"):
        pass
    assert duckdb.sql(f"SELECT * FROM '{tmp_path / 'none.parquet'}'").columns[:3] == \
        ["example_id", "batch", "layer"]

    model = bert()
    with pytest.warns(UserWarning, match="training mode"):
        with af.capture(model, topk=dict()) as cap:
            cap(**text_batches()[0])
    model.eval()
    with pytest.raises(ValueError, match="is topk's output too"):
        af.capture(model, topk=dict(out=tmp_path / "same/"), received=dict(out=tmp_path / "same"))
    with pytest.raises(ValueError, match="listed twice"):
        af.capture(model, modules=["encoder.layer.0.attention.self"] * 2, topk=dict())
    with pytest.raises(TypeError, match="modules: a list"):
        af.capture(model, modules="encoder.layer.0.attention.self", topk=dict())
    with pytest.raises(TypeError):
        with af.capture(model, topk=dict()) as cap:
            cap(text_batches()[0])  # the encoding is keywords
    t5 = transformers.T5Model(transformers.T5Config(
        vocab_size=60, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4,
        attn_implementation="eager"))
    with pytest.raises(ValueError, match="encoder-decoder"):
        af.capture(t5, topk=dict())
    # A batch whose run failed is dropped; the capture takes the next one.
    with af.capture(model, topk=dict(k=1)) as cap:
        with pytest.raises(ValueError, match="example_ids: 1 ids"):
            cap(**text_batches()[0], example_ids=["one"])
        cap(**text_batches()[0], example_ids=["a", "b"])
    assert cap.results["topk"]["example_id"].unique().sort().to_list() == ["a", "b"]
    with pytest.raises(ValueError, match="this capture is closed"):
        cap.close()
    # Longformer called with output_attentions=True keeps them in its output.
    lf = longformer().eval()
    with af.capture(lf, topk=dict(k=1)) as cap:
        out = cap(**longformer_batches()[0], output_attentions=True)
    assert len(out.attentions) == 2


def gpt2_lm():
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=60, n_layer=2, n_head=4, n_embd=32, n_positions=64, pad_token_id=0,
        attn_implementation="eager"))


def llama_lm():
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=60, num_hidden_layers=2, num_key_value_heads=2, max_position_embeddings=64,
        pad_token_id=0, attn_implementation="eager", **SMALL))


@pytest.mark.parametrize("build", [gpt2_lm, llama_lm])
def test_generate_ranks_each_step_as_a_forward_pass_over_the_sequence_would(build):
    torch.manual_seed(0)
    model = build().eval()
    g = torch.Generator().manual_seed(3)
    prompt = torch.randint(5, 60, (2, 6), generator=g)
    mask = torch.tensor([[1] * 6, [0, 0, 1, 1, 1, 1]])  # left padding, as for generation
    with af.capture(model, tokenizer=tokenizer(), topk=dict(k=3)) as cap:
        sequence = cap.generate(input_ids=prompt, attention_mask=mask, max_new_tokens=6,
                                do_sample=False)
    got = cap.results["topk"]
    assert got["example_id"].unique().sort().to_list() == ["0:0", "0:1"]
    # One forward pass over the whole generated sequence, with generate()'s positions.
    full_mask = torch.cat([mask, torch.ones(2, sequence.shape[1] - 6, dtype=mask.dtype)], 1)
    positions = (full_mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        out = model(input_ids=sequence, attention_mask=full_mask, position_ids=positions,
                    output_attentions=True)
    tokens = [tokenizer().convert_ids_to_tokens(r) for r in sequence.tolist()]
    want = af.topk(torch.stack(out.attentions).numpy(), attention_mask=full_mask.numpy(),
                   tokens=tokens, k=3)
    # The last generated token is never fed back: it has no row.
    want = want.filter(pl.col("query_position") < sequence.shape[1] - 1)
    keys = ["batch", "layer", "head", "query_position", "rank", "position"]
    assert got.select(keys).equals(want.select(keys))
    assert np.allclose(got["score"].to_numpy(), want["score"].to_numpy(), atol=1e-5)
    tok = lambda df, c: df[c].cast(pl.String).to_list()
    assert tok(got, "token") == tok(want, "token") and tok(got, "query_token") == tok(want, "query_token")
    with pytest.raises(ValueError, match="generate: only topk"):
        with af.capture(model, topk=dict(), received=dict()) as cap:
            cap.generate(input_ids=prompt, attention_mask=mask, max_new_tokens=2)


def test_generate_refuses_decodings_whose_rows_do_not_follow_one_sequence():
    torch.manual_seed(0)
    model = gpt2_lm().eval()
    prompt = torch.randint(5, 60, (2, 6), generator=torch.Generator().manual_seed(3))
    with pytest.raises(ValueError, match=r"beam search \(num_beams=2\) reorders its beams"):
        with af.capture(model, topk=dict(k=3)) as cap:
            cap.generate(input_ids=prompt, max_new_tokens=3, num_beams=2)
    config = transformers.GenerationConfig(num_beams=3, max_new_tokens=3)
    with pytest.raises(ValueError, match=r"num_beams=3"):
        with af.capture(model, topk=dict(k=3)) as cap:
            cap.generate(input_ids=prompt, generation_config=config)
    with pytest.raises(TypeError, match="device_reductions: True, False or None"):
        af.capture(model, topk=dict(), device_reductions="yes")


def test_a_stream_takes_generation_steps():
    rng = np.random.default_rng(8)
    prompt = rng.random((2, 1, 2, 3, 3), dtype=np.float32)
    steps = [rng.random((2, 1, 2, 1, 3 + t), dtype=np.float32) for t in (1, 2)]
    with af.stream("topk", k=2) as s:
        for layer in range(2):
            s.add(prompt[layer], layer=layer, step=0)
        for t, a in enumerate(steps, 1):
            for layer in range(2):
                s.add(a[layer], layer=layer, step=t)
    rows = s.result.filter((pl.col("layer") == 1) & (pl.col("head") == 0))
    assert rows["query_position"].unique(maintain_order=True).to_list() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="step 2: expected step 1"):
        with af.stream("topk") as s:
            s.add(prompt[0], layer=0, step=0)
            s.add(prompt[1], layer=1, step=0)
            s.add(steps[1][0], layer=0, step=2)
    with pytest.raises(ValueError, match="step: only topk"):
        with af.stream("received") as s:
            s.add(prompt[0], layer=0, step=0)


def generated(build, new_tokens=6):
    """Greedy generation from a batch of two left-padded prompts, with every step's attention:
    (model, generate's output, the whole sequence's attention mask)."""
    torch.manual_seed(0)
    model = build().eval()
    g = torch.Generator().manual_seed(3)
    prompt = torch.randint(5, 60, (2, 6), generator=g)
    mask = torch.tensor([[1] * 6, [0, 0, 1, 1, 1, 1]])
    with torch.no_grad():
        out = model.generate(input_ids=prompt, attention_mask=mask, max_new_tokens=new_tokens,
                             do_sample=False, output_attentions=True,
                             return_dict_in_generate=True)
    n = out.sequences.shape[1]
    full_mask = torch.cat([mask, torch.ones(2, n - 6, dtype=mask.dtype)], 1)
    return model, out, full_mask


def save_steps(d, attentions):
    """The steps in every saved form a user has: the .pt of `out.attentions`, an .npz and a
    .safetensors of one stacked array per step, and one .npy per step."""
    from safetensors.numpy import save_file
    stacked = [torch.stack(step).numpy() for step in attentions]
    torch.save(attentions, d / "steps.pt")
    np.savez(d / "steps.npz", *stacked)
    save_file({f"step_{t}": a for t, a in enumerate(stacked)}, d / "steps.safetensors")
    (d / "each").mkdir()
    for t, a in enumerate(stacked):
        np.save(d / "each" / f"step_{t}.npy", a)
    return [[d / "steps.pt"], [d / "steps.npz"], [d / "steps.safetensors"],
            [d / "each" / "step_*.npy"], [d / "each" / f"step_{t}.npy" for t in range(len(stacked))]]


GENERATION_COMMANDS = {"topk": ["-k", "3"], "received": ["--normalize", "minmax"],
                       "headstats": [], "melt": []}


@pytest.mark.parametrize("build", [gpt2_lm, llama_lm])
def test_saved_generation_steps_are_read_as_one_forward_pass_over_the_sequence(tmp_path, build):
    model, out, full_mask = generated(build)
    sequence = out.sequences
    n = sequence.shape[1] - 1  # the last generated token is never fed back: it has no row
    positions = (full_mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        forward = model(input_ids=sequence, attention_mask=full_mask, position_ids=positions,
                        output_attentions=True)
    np.save(tmp_path / "forward.npy", torch.stack(forward.attentions)[..., :n, :n].numpy())
    np.save(tmp_path / "mask.npy", full_mask[:, :n].numpy())
    tokens = [tokenizer().convert_ids_to_tokens(r) for r in sequence[:, :n].tolist()]
    (tmp_path / "tokens.json").write_text(json.dumps(tokens))
    forms = save_steps(tmp_path, out.attentions)

    def run(command, attn, *extra):
        o = tmp_path / f"{command}.parquet"
        args = [BIN, command, "--attn", *attn, "--tokens", tmp_path / "tokens.json", *extra,
                *GENERATION_COMMANDS[command], "-o", o]
        if command != "melt":
            args += ["--attention-mask", tmp_path / "mask.npy"]
        p = subprocess.run([str(a) for a in args], capture_output=True)
        assert p.returncode == 0, p.stderr.decode()
        return pl.read_parquet(o)

    for command in ["topk", "received", "headstats"]:
        want = run(command, [tmp_path / "forward.npy"])
        for attn in forms:
            got = run(command, attn, "--generation-steps")
            floats = [c for c, t in want.schema.items() if t.is_float()]
            assert got.drop(floats).equals(want.drop(floats)), (command, attn)
            for c in floats:
                assert np.allclose(got[c].to_numpy(), want[c].to_numpy(), atol=1e-5,
                                   equal_nan=True), (command, attn, c)
    # melt: each row over the keys its step holds: the prompt's square, then keys 0..p.
    melted = run("melt", forms[0], "--generation-steps")
    assert melted.columns == ["batch", "layer", "head", "query_position", "query_token",
                              "position", "token", "value"]
    keys = lambda q: 6 if q < 6 else q + 1
    assert len(melted) == 2 * 2 * 4 * sum(keys(q) for q in range(n))
    full = torch.stack(forward.attentions).numpy()
    # Padded queries' rows (batch row 1's first two) are not the same computation twice.
    real = melted.filter((pl.col("batch") == 0) | (pl.col("query_position") >= 2))
    at = real.select("layer", "batch", "head", "query_position", "position").to_numpy().T
    assert np.allclose(real["value"].to_numpy(), full[tuple(at)], atol=1e-5)
    assert melted["token"].cast(pl.String).to_list()[:6] == tokens[0][:6]

    # The Python package reads the same files, and the live capture ranks the same rows.
    py = af.topk([str(p) for p in forms[4]], generation_steps=True, k=3,
                 attention_mask=str(tmp_path / "mask.npy"), tokens=tokens)
    assert py.equals(run("topk", forms[0], "--generation-steps"))
    in_memory = af.headstats(out.attentions, generation_steps=True,
                             attention_mask=full_mask[:, :n].numpy(), tokens=tokens)
    assert in_memory.equals(run("headstats", forms[0], "--generation-steps"))
    with af.capture(model, topk=dict(k=3)) as cap:
        cap.generate(input_ids=sequence[:, :6], attention_mask=full_mask[:, :6],
                     max_new_tokens=6, do_sample=False)
    live = cap.results["topk"].drop("example_id", "token", "query_token")
    assert live.drop("score").equals(py.drop("score", "token", "query_token"))
    assert np.allclose(live["score"].to_numpy(), py["score"].to_numpy(), atol=1e-6)


def test_generation_steps_that_do_not_fit_are_errors(tmp_path):
    _, out, full_mask = generated(gpt2_lm, new_tokens=3)
    forms = save_steps(tmp_path, out.attentions)
    each = forms[4]

    def error(*args):
        p = subprocess.run([str(a) for a in [BIN, "topk", "--generation-steps", *args,
                                             "-o", tmp_path / "x.parquet"]], capture_output=True)
        assert p.returncode != 0 and not (tmp_path / "x.parquet").exists()
        return p.stderr.decode().strip()

    assert "step 1 has 1 query rows over 8 keys" in error("--attn", each[0], each[2])
    assert "step 0 has 1 query rows over 7 keys" in error("--attn", each[1])
    assert "names one array, which holds one step" in error("--attn", forms[1][0],
                                                             "--attn-key", "arr_1")
    np.save(tmp_path / "mask.npy", full_mask.numpy())
    assert "generate()'s last token is never fed back" in error(
        "--attn", forms[0][0], "--attention-mask", tmp_path / "mask.npy")
    torch.save({"attentions": out.attentions[0]}, tmp_path / "layers.pt")
    assert "entry 'attentions' is a tuple of 4-D tensors, the layers (B, H, Q, K) of one step" \
        in error("--attn", tmp_path / "layers.pt")


def test_tensors_where_paths_belong_say_what_they_look_like():
    layers = tuple(torch.full((1, 2, 3, 3), 1 / 3) for _ in range(2))
    steps = (layers, tuple(torch.full((1, 2, 1, 4), 0.25) for _ in range(2)))
    with pytest.raises(TypeError, match=r"out.attentions: pass generation_steps=True"):
        af.topk(steps, k=1)
    with pytest.raises(TypeError, match=r"torch.stack\(out.attentions\)"):
        af.topk(layers, k=1)
    with pytest.raises(TypeError, match="melt reads generation steps from files"):
        af.melt(steps, generation_steps=True)


def test_a_layers_nan_is_named_by_its_layer_in_the_model():
    ok = np.full((1, 2, 3, 3), 1 / 3, np.float32)
    bad = ok.copy()
    bad[0, 1, 2, 1] = np.nan
    s = af.stream("topk", k=1, num_layers=2)
    s.add(ok, layer=0)
    with pytest.raises(ValueError, match=r"^layer 1 of batch 0: .*attention contains NaN at "
                                         r"batch 0, head 1, query 2, key 1"):
        s.add(bad, layer=1)


def test_closing_inside_the_block_leaves_the_exit_nothing_to_do():
    model = gpt2_lm().eval()
    with af.capture(model, topk=dict(k=2)) as cap:
        cap(input_ids=torch.tensor([[5, 6, 7]]))
        results = cap.close()
    assert results["topk"].height > 0
    with af.stream("topk", k=1) as s:
        s.add(np.full((1, 1, 1, 2, 2), 0.5, np.float32))
        s.close()
    assert s.result.height == 2
