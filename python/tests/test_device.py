"""Reductions on the attention's device (`attnframes._device`) against the Rust path: the
frames built from ranked keys and received sums equal those built from the layer itself, byte
for byte, with ties, NaN, masks, float16/bfloat16, head importance and Q < K. CI runs them on
CPU tensors; `benches/gpu_capture.py --tests` runs this file on a GPU, where every test runs
on CUDA tensors too. pyarrow only (the GPU machine has no polars)."""
import numpy as np
import pyarrow as pa
import pytest

import attnframes as af
from attnframes import _device

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


def layer(seed, b=3, h=4, q=7, k=9, nan=False):
    """(B, H, Q, K) scores with many ties (a few distinct values, ±0.0) and, when asked, NaN."""
    g = torch.Generator().manual_seed(seed)
    values = torch.tensor([0.0, -0.0, 0.125, 0.25, 0.5, 0.75, 1.0, 3.0, -2.0])
    a = values[torch.randint(0, len(values), (b, h, q, k), generator=g)]
    if nan:
        a[torch.rand(a.shape, generator=g) < 0.1] = float("nan")
    return a


def masks(b, k):
    """Right padding in row 1, left padding in row 2 (as for generation)."""
    m = np.ones((b, k), dtype=np.int64)
    m[1, k - 3:] = 0
    if b > 2:
        m[2, :2] = 0
    return m


def host(a):
    """The layer as the CPU path reads it (numpy has no bfloat16; widening it is exact)."""
    return (a.float() if a.dtype == torch.bfloat16 else a).numpy()


def reduced_frame(command, attn, mask, **options):
    """The stream's frame from the layer reduced on its device."""
    q, n = attn.shape[-2:]
    valid = None if mask is None else torch.as_tensor(mask, device=attn.device).ne(0)
    if command == "topk":
        positions, scores = _device.topk(attn, options.get("k", 10), valid_keys=valid)
        red = _device.Reduced(q, n, positions=positions.cpu().numpy(),
                              scores=scores.cpu().numpy())
    else:
        queries = None if valid is None else valid[:, n - q:]
        sums = _device.received_sums(attn, valid_queries=queries)
        red = _device.Reduced(q, n, sums=sums.cpu().numpy())
    with af.stream(command, as_arrow=True, **options) as s:
        s.add_reduced(red, layer=0, attention_mask=mask)
    return s.result.drop_columns(["example_id"])


def same_bytes(got, want):
    """Equal tables, float columns compared by their bits (NaN equals NaN of the same bits)."""
    if got.schema != want.schema or got.num_rows != want.num_rows:
        return False
    for name in got.column_names:
        a, b = got.column(name).combine_chunks(), want.column(name).combine_chunks()
        if a.type in (pa.float32(), pa.float64()):
            bits = np.uint32 if a.type == pa.float32() else np.uint64
            if not a.is_null().equals(b.is_null()):
                return False
            a, b = (x.fill_null(0).to_numpy(zero_copy_only=False).view(bits) for x in (a, b))
            if not np.array_equal(a, b):
                return False
        elif not a.equals(b):
            return False
    return True


def layer_frame(command, attn, mask, **options):
    """The stream's frame from the layer itself (the CPU path)."""
    with af.stream(command, as_arrow=True, **options) as s:
        s.add(host(attn.cpu()), layer=0, attention_mask=mask)
    return s.result.drop_columns(["example_id"])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("masked", [False, True])
def test_device_topk_ranks_as_the_rust_path(device, dtype, masked):
    for seed, nan in [(0, False), (1, True)]:
        attn = layer(seed, nan=nan).to(dtype).to(device)
        mask = masks(3, 9) if masked else None
        for k in (1, 3, 9, 20):
            options = dict(k=k, allow_nan=nan)
            got = reduced_frame("topk", attn, mask, **options)
            want = layer_frame("topk", attn, mask, **options)
            assert same_bytes(got, want), (seed, k)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_device_received_sums_are_the_rust_paths_to_the_bit(device, dtype):
    g = torch.Generator().manual_seed(5)
    attn = torch.rand((3, 4, 6, 11), generator=g).softmax(-1).to(dtype).to(device)
    for mask in (None, masks(3, 11)):
        for options in (dict(), dict(normalize="minmax"), dict(reduce="heads"),
                        dict(normalize="none", reduce="layers")):
            got = reduced_frame("received", attn, mask, **options)
            want = layer_frame("received", attn, mask, **options)
            assert same_bytes(got, want), options
    # Ties and NaN: the sums themselves, as the CPU path adds them.
    attn = layer(2, nan=True).to(device)
    sums = _device.received_sums(attn).cpu().numpy()
    want = host(attn.cpu()).astype(np.float64).cumsum(axis=2)[:, :, -1, :]
    assert np.array_equal(sums, want, equal_nan=True)


@pytest.mark.parametrize("device", DEVICES)
def test_queries_that_are_the_last_positions_and_head_importance(device):
    attn = layer(3, q=2, k=9).to(device)  # a generation step's two last positions
    mask = masks(3, 9)
    got = reduced_frame("topk", attn, mask, k=4)
    want = layer_frame("topk", attn, mask, k=4)
    assert same_bytes(got, want)
    assert got.column("query_position").to_pylist()[:4] == [7] * 4
    importance = np.array([0.5, 2.0, 1.0, 0.3])
    positions, scores = _device.topk(attn, 3, head_importance=importance)
    frame = af.topk(host(attn.cpu())[None], head_importance=importance[None], k=3,
                    as_arrow=True)
    assert positions.cpu().numpy().ravel().tolist() == frame.column("position").to_pylist()
    assert np.array_equal(scores.cpu().numpy().ravel(), frame.column("score").to_numpy())
    sums = _device.received_sums(attn, head_importance=importance).cpu().numpy()
    scaled = (host(attn.cpu()).astype(np.float64) * importance[None, :, None, None])
    want_sums = scaled.astype(np.float32).astype(np.float64).cumsum(axis=2)[:, :, -1, :]
    assert np.array_equal(sums, want_sums)


def tiny_bert():
    torch.manual_seed(0)
    return transformers.BertModel(transformers.BertConfig(
        vocab_size=60, num_hidden_layers=3, max_position_embeddings=64, hidden_size=32,
        num_attention_heads=4, intermediate_size=64, attn_implementation="eager")).eval()


def batches():
    g = torch.Generator().manual_seed(0)
    return [{"input_ids": torch.randint(5, 60, (2, 9), generator=g),
             "attention_mask": torch.ones(2, 9, dtype=torch.long)},
            {"input_ids": torch.randint(5, 60, (3, 6), generator=g),
             "attention_mask": torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 5 + [0]])}]


STREAMS = dict(topk=dict(k=3, as_arrow=True), received=dict(normalize="minmax", as_arrow=True),
               headstats=dict(as_arrow=True))


def captured(model, device, **how):
    overlap = how.pop("overlap", False)
    with af.capture(model, **how, **STREAMS) as cap:
        cap._overlap = overlap
        for encoding in batches():
            cap(**{k: v.to(device) for k, v in encoding.items()})
    return cap.results


@pytest.mark.parametrize("device", DEVICES)
def test_capture_reduced_on_the_device_equals_the_cpu_path(device):
    # The same model on the same device computes the same attention every run: each way of
    # capturing it sees the same numbers (a model on another device computes others).
    model = tiny_bert().to(device)
    want = captured(model, device, device_reductions=False)  # the layer copied to the host
    for how in (dict(device_reductions=True), dict(device_reductions=False, overlap=True)):
        got = captured(model, device, **how)
        for name in STREAMS:
            assert same_bytes(got[name], want[name]), (how, name)


class NanAttention(torch.nn.Module):
    """A module whose weights hold one NaN: the device path must raise as the CPU path does."""

    def forward(self, x):
        weights = torch.softmax(x, -1)
        weights[0, 0, 0, 1] = float("nan")
        return x, weights


class OneLayer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = NanAttention()

    def forward(self, x):
        return self.attn(x)[0]


@pytest.mark.parametrize("device", DEVICES)
def test_nan_raises_through_the_device_path_as_on_the_cpu(device):
    model = OneLayer().to(device).eval()
    x = torch.rand((1, 2, 3, 3), device=device)
    messages = []
    for reductions in (None, True):
        with pytest.raises(ValueError) as e:
            with af.capture(model, modules=["attn"], device_reductions=reductions,
                            topk=dict(k=2)) as cap:
                cap(x=x)
        messages.append(str(e.value))
    assert messages[0] == messages[1]
    assert "layer 0 of batch 0: " in messages[0]
    assert "attention contains NaN at batch 0, head 0, query 0, key 1" in messages[0]
