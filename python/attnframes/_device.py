"""Reductions where the attention is: torch operations (and, on CUDA, one Triton kernel) that
rank keys and sum received attention on the tensor's own device, so that a capture on a GPU
copies only their results to the host. The Rust side builds the frames from them as it would
from the layer (``Stream.add_reduced``); the frames are the same to the byte.

The same functions run on CPU tensors, which is how CI tests them against the Rust path.

Ranking follows attnframes' order: score descending, ``-0.0`` equal to ``+0.0``, NaN after
every number, ties to the lower position. ``torch.topk`` leaves the order of ties unspecified
(pytorch #127196), so scores and positions are packed into one int64 key whose order is that
total order (the key attnframes' Rust kernels use, ``topk_frames::rank::rank_key``, shifted
into the signed range), and the keys are ranked instead.
"""

_INT64_MIN = -(1 << 63)
_LOW = (1 << 32) - 1

try:  # Triton (with torch on CUDA) sums received attention in one pass, in query order.
    import triton as _triton
    import triton.language as _tl
except ImportError:  # pragma: no cover - CPU-only installs
    _triton = None


class Reduced:
    """One layer (B, H, Q, K) reduced on its device, its results on the host for
    :meth:`attnframes.Stream.add_reduced`.

    Attributes
    ----------
    queries, keys : int
        Q and K of the layer.
    positions : numpy.ndarray | None
        (B, H, Q, k) int64: each query's k best key positions, best first, −1 past the valid
        keys.
    scores : numpy.ndarray | None
        (B, H, Q, k) float32: the scores at ``positions``.
    sums : numpy.ndarray | None
        (B, H, K) float64: each key's attention summed over the valid queries in query order.
    non_finite : tuple[int, float] | None
        The first NaN or ±Inf of the valid query rows (:func:`first_non_finite`): its flat
        index in (B, H, Q, K) C order and its value; the stream then raises as it would over
        the layer, unless it allows NaN.
    """

    def __init__(self, queries, keys, positions=None, scores=None, sums=None, non_finite=None):
        self.queries, self.keys = int(queries), int(keys)
        self.positions, self.scores, self.sums = positions, scores, sums
        self.non_finite = non_finite


def rank_keys(scores):
    """int64 ranking keys of float32 ``scores`` (..., K): a larger key ranks higher.

    ``key = order(score) · 2³² + (2³² − 1 − position)``, where ``order`` maps a float32 to an
    int32 in the order of its value: its bits, the 31 below the sign flipped for negative
    numbers, ``-0.0`` taken as ``+0.0`` and NaN as the int32 minimum, below every number
    (attnframes' ``rank_key`` less 2⁶³). Keys are distinct within a row, so ``torch.topk``
    over them is a stable sort's top k. The work is done in place: about 17 bytes of
    temporaries per score.
    """
    import torch

    s = scores + 0.0  # a copy, and -0.0 + 0.0 is +0.0
    nan = torch.isnan(s)
    bits = s.view(torch.int32)
    bits ^= (bits >> 31) & 0x7FFFFFFF
    bits.masked_fill_(nan, -(1 << 31))
    del nan
    keys = bits.to(torch.int64)
    del s, bits
    positions = torch.arange(keys.shape[-1], device=keys.device, dtype=torch.int64)
    return keys.mul_(1 << 32).add_(_LOW - positions)


def widened(attn, head_importance=None):
    """``attn`` (B, H, Q, K) as the float32 attnframes analyses: float16/bfloat16 widened
    (exactly), float64 rounded to nearest; times each head's importance (H,) in float64, then
    rounded to float32, when given."""
    import torch

    a = attn.float()
    if attn.dtype == torch.float16:
        # CUDA widens every float16 NaN to one canonical NaN; the host keeps its sign and
        # payload, and so do the frames.
        h = attn.view(torch.int16).to(torch.int32)
        exact = ((h & 0x8000) << 16) | 0x7F800000 | ((h & 0x3FF) << 13)
        a = torch.where(torch.isnan(a), exact.view(torch.float32), a)
    if head_importance is not None:
        f = torch.as_tensor(head_importance, dtype=torch.float64, device=a.device)
        a = (a.double() * f[None, :, None, None]).float()
    return a


def _heads_per_chunk(attn, bytes_per_element):
    """Heads ranked at once so that their temporaries (``bytes_per_element`` per score) stay
    within two layers' size: what a capture may add to the model's GPU memory."""
    b, h, q, k = attn.shape
    budget = max(2 * attn.numel() * attn.element_size(), 1)
    return max(1, min(h, budget // max(b * q * k * bytes_per_element, 1)))


def topk(attn, k, *, valid_keys=None, head_importance=None):
    """Each query's ``k`` best keys of ``attn`` (B, H, Q, K), on its device.

    Parameters
    ----------
    attn : torch.Tensor
        (B, H, Q, K) float16/bfloat16/float32/float64 attention.
    k : int
        Keys per query, at least 1 (clamped to K).
    valid_keys : torch.Tensor | None
        (B, K) bool on ``attn``'s device: the keys that may rank (the attention mask); the
        others rank after every valid key and come back as position −1.
    head_importance : Sequence[float] | torch.Tensor | None
        (H,) weights multiplied in first, as ``--head-importance`` does.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        Positions (B, H, Q, min(k, K)) int64 and their scores float32, best first.
    """
    import torch

    b, h, q, n = attn.shape
    kk = min(int(k), n)
    positions = torch.empty((b, h, q, kk), dtype=torch.int64, device=attn.device)
    scores = torch.empty((b, h, q, kk), dtype=torch.float32, device=attn.device)
    per = _heads_per_chunk(attn, 24)
    for h0 in range(0, h, per):
        part = slice(h0, h0 + per)
        hi = None if head_importance is None else torch.as_tensor(
            head_importance, dtype=torch.float64)[part]
        a = widened(attn[:, part], hi)
        keys = rank_keys(a)
        if valid_keys is not None:
            keys.masked_fill_(~valid_keys[:, None, None, :], _INT64_MIN)
        top = keys.topk(kk, dim=-1, sorted=True).values
        del keys
        pos = _LOW - (top & _LOW)
        scores[:, part] = a.gather(-1, pos.clamp(max=n - 1))
        positions[:, part] = pos.masked_fill_(top == _INT64_MIN, -1)
    return positions, scores


def received_sums(attn, *, valid_queries=None, head_importance=None):
    """Each key's attention summed over the valid queries of ``attn`` (B, H, Q, K), in float64
    and in query order, as attnframes' ``received`` adds them: the sums are the same to the
    bit. On CUDA with Triton, one kernel reads the layer once; elsewhere, one addition per
    query row.

    Parameters
    ----------
    attn : torch.Tensor
        (B, H, Q, K) float16/bfloat16/float32/float64 attention.
    valid_queries : torch.Tensor | None
        (B, Q) bool on ``attn``'s device: the query rows to add (the attention mask's).
    head_importance : Sequence[float] | torch.Tensor | None
        (H,) weights multiplied in first (float64, then rounded to float32).

    Returns
    -------
    torch.Tensor
        (B, H, K) float64.
    """
    import torch

    if attn.is_cuda and _triton is not None:
        return _received_sums_triton(attn, valid_queries, head_importance)
    a = widened(attn, head_importance)
    b, h, q, n = a.shape
    sums = torch.zeros((b, h, n), dtype=torch.float64, device=a.device)
    for i in range(q):
        row = a[:, :, i, :].double()
        if valid_queries is not None:
            row = torch.where(valid_queries[:, i, None, None], row, 0.0)
        sums += row
    return sums


def first_non_finite(attn, valid_queries=None):
    """Where the first NaN or ±Inf of ``attn`` (B, H, Q, K) is, in C order, among the valid
    query rows (B, Q): (flat index, −1 when there is none; the value there, float32), two 0-d
    tensors on ``attn``'s device, computed without a sync."""
    import torch

    bad = ~torch.isfinite(attn)
    if valid_queries is not None:
        bad &= valid_queries[:, None, :, None]
    flat = bad.reshape(-1)
    at = flat.to(torch.uint8).argmax()  # the first maximum: the first True
    index = torch.where(flat[at], at, torch.full_like(at, -1))
    return index, attn.reshape(-1)[at].float()


if _triton is not None:
    @_triton.jit
    def _received_kernel(a_ptr, valid_ptr, hi_ptr, out_ptr, heads, queries, keys,
                         stride_b, stride_h, stride_q, stride_k, valid_stride,
                         HAS_VALID: _tl.constexpr, HAS_HI: _tl.constexpr,
                         BLOCK: _tl.constexpr):
        bh = _tl.program_id(0)
        b = bh // heads
        h = bh % heads
        ks = _tl.program_id(1) * BLOCK + _tl.arange(0, BLOCK)
        in_row = ks < keys
        base = a_ptr + b * stride_b + h * stride_h + ks * stride_k
        acc = _tl.zeros([BLOCK], dtype=_tl.float64)
        if HAS_HI:
            f = _tl.load(hi_ptr + h)
        for i in range(0, queries):
            x = _tl.load(base + i * stride_q, mask=in_row, other=0.0).to(_tl.float32)
            if HAS_HI:
                x = (x.to(_tl.float64) * f).to(_tl.float32)
            v = x.to(_tl.float64)
            if HAS_VALID:
                keep = _tl.load(valid_ptr + b * valid_stride + i)
                v = _tl.where(keep != 0, v, 0.0)
            acc += v
        _tl.store(out_ptr + bh * keys + ks, acc, mask=in_row)


def _received_sums_triton(attn, valid_queries, head_importance):
    import torch

    b, h, q, n = attn.shape
    out = torch.empty((b, h, n), dtype=torch.float64, device=attn.device)
    valid = None if valid_queries is None else valid_queries.to(torch.int8).contiguous()
    hi = None if head_importance is None else torch.as_tensor(
        head_importance, dtype=torch.float64, device=attn.device).contiguous()
    block = 128
    grid = (b * h, _triton.cdiv(n, block))
    _received_kernel[grid](attn, valid if valid is not None else out,
                           hi if hi is not None else out, out, h, q, n, *attn.stride(),
                           valid.stride(0) if valid is not None else 0,
                           HAS_VALID=valid is not None, HAS_HI=hi is not None, BLOCK=block)
    return out
