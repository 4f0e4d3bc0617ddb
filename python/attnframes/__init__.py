"""attnframes from Python: transformer attention as long-format frames, in-process.

Every function runs the attnframes command of the same name in Rust (the application layer
the CLI uses too), with keyword parameters named as Python names them: ``attention_mask``,
``k``, ``normalize``, ``partition_by`` ... ``help(attnframes.topk)`` lists them with their
types, defaults and units.

``attn`` is a path, a list of paths or globs (one example each: a dataset), or an array:
a C-contiguous float16/32/64 numpy array (``torch.stack(outputs.attentions).numpy()``, with
``layout=`` when it is not LBHQK) is read in place, never copied; other arrays are made
C-contiguous first. ``tokens`` may be a list of strings (one for every batch row) or a list
of lists (one per batch row). The other arrays (``attention_mask``, ``padding_mask``,
``head_importance``, ``input_ids``, ``attributions``, ``features``, ``attn_b``) are read in place
the same way.

Without ``out`` the result comes back as a ``polars.DataFrame`` (or a ``pyarrow.Table`` with
``as_arrow=True``), handed over through the Arrow C stream interface without copying. With
``out`` the command writes it (a file, or a dataset directory ``"out/"``) and returns None.

Errors: ``TypeError`` for an unknown keyword or a value of the wrong type, ``ValueError`` for
bad options or input, ``OSError`` for a file that cannot be opened, read or written; the
message names the file or the parameter.

>>> import attnframes as af
>>> df = af.topk("attentions.npy", tokens="tokens.json", k=10)              # doctest: +SKIP
>>> tbl = af.received("attentions.npy", normalize="minmax", as_arrow=True)  # doctest: +SKIP
>>> af.topk(["a.npy", "b.npy"], k=10, out="out/", partition_by=["layer"])   # doctest: +SKIP
"""

import inspect as _inspect
import json as _json
import os as _os
import re as _re
import textwrap as _textwrap

from . import _native
from ._capture import Capture
from ._finishing import Finishing

__version__ = _native.__version__
__all__ = ["topk", "received", "headstats", "similarity", "rollout", "compare", "cluster", "melt",
           "plot", "view", "dense", "inspect", "stream", "Stream", "capture", "Capture"]

_REQUIRED = _inspect.Parameter.empty


class _Param:
    """One keyword parameter: its default, type hint, documentation, and the dict it goes to."""

    def __init__(self, name, default, hint, doc, group="options", convert=None):
        self.name, self.default, self.hint, self.doc = name, default, hint, doc
        self.group, self.convert = group, convert


def _path(value):
    return _os.fspath(value)


def _paths(value):
    items = value if isinstance(value, (list, tuple)) else [value]
    return _fspaths(items, "melt reads generation steps from files: torch.save(out.attentions, "
                           "'steps.pt') and pass that file")


def _fspaths(items, steps_hint="pass generation_steps=True"):
    """`items` as paths; tensors where paths belong get a TypeError saying what they look like."""
    try:
        return [_os.fspath(v) for v in items]
    except TypeError:
        first = items[0] if items else None
        if isinstance(first, (list, tuple)):
            raise TypeError(f"attn: a sequence of tuples of tensors is generate()'s "
                            f"out.attentions: {steps_hint}") from None
        if hasattr(first, "shape"):
            raise TypeError("attn: a sequence of per-layer tensors (a model's out.attentions): "
                            "stack them into one (L, B, H, Q, K) array, e.g. "
                            "torch.stack(out.attentions)") from None
        raise


def _array_or_path(value):
    return _array(value) if _is_array(value) else _os.fspath(value)


def _selection(value):
    if isinstance(value, str):
        return value
    if hasattr(value, "__iter__"):
        return ",".join(str(_index(v)) for v in value)
    return str(_index(value))


def _index(value):
    import operator

    i = operator.index(value)
    if i < 0:
        raise ValueError(f"{i} is negative; indices count from 0")
    return i


def _strings(value):
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _channel_list(value):
    if isinstance(value, str):
        return [c.strip() for c in value.split(",") if c.strip()]
    return [str(c) for c in value]


def _axes(value):
    if isinstance(value, str):
        return [a.strip() for a in value.split(",")] if value.strip() else []
    return [str(a) for a in value]


def _shard(value):
    if isinstance(value, (list, tuple)):
        i, n = value
        return f"{int(i)}/{int(n)}"
    return str(value)


_PATH = "str | os.PathLike[str]"
_ARRAY_OR_PATH = "str | os.PathLike[str] | numpy.ndarray"
_SELECTION = "str | int | Sequence[int] | None"

_INPUT = [
    _Param("layout", None, "str | None",
           "Axis letters L B H Q K of ``attn`` (default LBHQK for 5-D, HQK for 3-D, QK for 2-D; "
           "4-D needs it).", "input"),
    _Param("attn_key", None, "str | None",
           "Array name inside .npz/.safetensors/.pt (default ``attentions``, else the only array), "
           "or a pattern (``'arr_*'``) whose arrays are stacked as layers.", "input"),
    _Param("attention_mask", None, f"{_ARRAY_OR_PATH} | None",
           "(B, S) HF attention_mask, integer or bool: 1 = real token, 0 = padding; padded "
           "queries and keys are left out.", "input", _array_or_path),
    _Param("padding_mask", None, f"{_ARRAY_OR_PATH} | None",
           "(B, S) PyTorch key_padding_mask: True (nonzero) = padding.", "input", _array_or_path),
    _Param("tokens", None, f"{_PATH} | Sequence[str] | Sequence[Sequence[str]] | None",
           "Tokens: a .txt (one per line) or .json file, a list of strings (every batch row), or "
           "a list of lists (one per batch row), S tokens each.", "input"),
    _Param("input_ids", None, f"{_ARRAY_OR_PATH} | None",
           "(B, S) integer token ids, turned into tokens with ``vocab``.", "input", _array_or_path),
    _Param("vocab", None, f"{_PATH} | None",
           "vocab.txt, vocab.json or tokenizer.json for ``input_ids``.", "input", _path),
    _Param("head_importance", None, f"{_ARRAY_OR_PATH} | None",
           "(L, H) float weights: each head's attention is multiplied by its weight first.",
           "input", _array_or_path),
    _Param("layers", None, _SELECTION,
           "Layers to use, e.g. ``'0,3,8-11'`` or ``[0, 3]`` (tensor numbering is kept).",
           "input", _selection),
    _Param("heads", None, _SELECTION, "Heads to use, e.g. ``'0-5'``.", "input", _selection),
    _Param("batch", None, _SELECTION, "Batch rows to use, e.g. ``2``.", "input", _selection),
    _Param("allow_nan", False, "bool",
           "Accept NaN/Inf in attention instead of raising ValueError; NaN then ranks last and "
           "makes every sum it enters NaN.", "input"),
    _Param("query_offset", None, "int | None",
           "The position of query row 0 among the K key positions. Default: K − Q when there "
           "are fewer queries than keys (``generate()``'s steps with a KV cache, (B, H, 1, P + t)"
           "), 0 when square; tokens and masks index the K positions.", "input", _index),
    _Param("cross_attention", False, "bool",
           "The queries are another sequence's (an encoder-decoder's cross-attention): query "
           "positions 0..Q; masks describe the keys and tokens cannot be given.", "input"),
    _Param("generation_steps", False, "bool",
           "``attn`` holds the steps of one ``generate(output_attentions=True, "
           "return_dict_in_generate=True)`` call, read as one example over the whole generated "
           "sequence: ``out.attentions`` itself (each step's layers stacked into one array, a "
           "copy; bfloat16 widened to float32), a list of files (one step each, or a glob in "
           "natural order) or one .pt (``torch.save(out.attentions, path)``), .npz or "
           ".safetensors holding every step. "
           "Masks and tokens cover the K positions the steps attend over: "
           "``out.sequences[:, :-1]`` (the last token is never fed back).", "input"),
    _Param("global_attn", None, f"{_PATH} | numpy.ndarray | None",
           "Longformer global attentions (L, B, H, S_pad, x), a file or an array read in place: "
           "``attn`` is then HF's sliding-window tensor (L, B, H, S, x + w + 1).", "input",
           _array_or_path),
    _Param("sliding_window", False, "bool",
           "``attn`` is Longformer's sliding-window tensor even without ``global_attn`` (x = 0).",
           "input"),
    _Param("global_mask", None, f"{_PATH} | numpy.ndarray | None",
           "(B, S) HF global_attention_mask, nonzero = global (needed when x > 1), a file or "
           "an array read in place.", "input", _array_or_path),
    _Param("words", False, "bool",
           "Merge word pieces (WordPiece ``##``, SentencePiece ``▁``, BPE ``Ġ``) into words first; "
           "positions then index words. Needs tokens.", "input"),
    _Param("word_from", "mean", "Literal['mean', 'first', 'max']",
           "A word's row from its pieces' rows: the mean (Clark et al. 2019), the first, or the "
           "max renormalised to sum to 1.", "input"),
]

_DATASET = [
    _Param("tokens_dir", None, f"{_PATH} | None",
           "Per-file tokens: ``<stem>.json`` or ``<stem>.txt`` here (with ``vocab``: "
           "``<stem>.ids.npy``).", "options", _path),
    _Param("example_id_from", "stem", "Literal['stem', 'index']",
           "``example_id`` from the file stem (``stem:batch`` for files of several batch rows) or "
           "the file's index in the input list."),
    _Param("partition_by", None, "Sequence[str] | None",
           "With ``out='dir/'``: hive folders per value of these columns, e.g. ``['layer']``.",
           "options", _strings),
    _Param("max_rows_per_file", 10_000_000, "int",
           "With ``out='dir/'``: rows per part file at most."),
    _Param("shard", None, "tuple[int, int] | str | None",
           "``(i, n)``: process the i-th of n contiguous slices of the input list; with "
           "``out='dir/'``.", "options", _shard),
]

_FIGURE = [
    _Param("colormap", None, "Literal['viridis', 'nipy_spectral', 'purples'] | None",
           "Colour map (default viridis; purples for the cluster composite)."),
    _Param("vmin", None, "float | None", "Bottom of the colour scale."),
    _Param("vmax", None, "float | None",
           "Top of the colour scale (e.g. 0.05 to make figures of several runs comparable)."),
    _Param("annotate", False, "bool", "Write each cell's value in it (small matrices)."),
    _Param("dpi", 100, "int", "Resolution, 25..600: pixel sizes and fonts scale with dpi / 100."),
    _Param("size", None, "str | None", "Image size in pixels, e.g. ``'1600x900'``."),
]

_OUTPUT = [
    _Param("out", None, f"{_PATH} | None",
           "Write the frame here (.parquet, .csv, .arrow/.ipc; ``'dir/'`` for a Parquet "
           "dataset) and return None. Default: return it.", "output", _path),
    _Param("format", None, "Literal['parquet', 'csv', 'ipc'] | None",
           "Output format (default: from ``out``'s extension).", "output"),
    _Param("compression", "zstd", "Literal['zstd', 'snappy', 'none']", "Parquet compression.",
           "output"),
    _Param("row_group_size", 1 << 20, "int",
           "Rows per Parquet row group and per returned chunk (at least 1).", "output"),
    _Param("as_arrow", False, "bool",
           "Return a ``pyarrow.Table`` instead of a ``polars.DataFrame``.", "python"),
]

_THREADS = [
    _Param("threads", None, "int | None",
           "Worker threads (default: all cores); the output is identical for any number."),
]

_FRAME = "polars.DataFrame | pyarrow.Table | None"
_RAISES = """Raises
------
TypeError
    An unknown keyword, or a value of the wrong type (the message names the parameter).
ValueError
    Options that do not fit together or are out of range, or an input that is not what it must
    be (wrong shape or dtype, a mask of the other convention, NaN without ``allow_nan``).
OSError
    A file that cannot be opened, read or written."""


class _Command:
    """One command: its parameters, documentation, and how the native function is called."""

    def __init__(self, name, summary, first, params, returns, call):
        self.name, self.summary, self.first = name, summary, first
        self.params, self.returns, self.call = params, returns, call

    def signature(self):
        first = [_inspect.Parameter(self.first.name, _inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                    annotation=self.first.hint)]
        rest = [_inspect.Parameter(p.name, _inspect.Parameter.KEYWORD_ONLY, default=p.default,
                                   annotation=p.hint) for p in self.params]
        return _inspect.Signature(first + rest, return_annotation=self.returns[0])

    def doc(self):
        wrap = lambda text, indent="": _textwrap.fill(text, 92, initial_indent=indent,
                                                      subsequent_indent=indent)
        lines = ["\n\n".join(wrap(part) for part in self.summary.split("\n\n")), "",
                 "Parameters", "----------"]
        for p in [self.first] + self.params:
            default = "" if p.default is _REQUIRED else f", default {p.default!r}"
            lines += [f"{p.name} : {p.hint}{default}", wrap(p.doc, "    ")]
        lines += ["", "Returns", "-------", self.returns[0], wrap(self.returns[1], "    "), "",
                  _RAISES]
        return "\n".join(lines)


def _make(command):
    signature = command.signature()

    def run(*args, **kwargs):
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{command.name}() {e}") from None
        bound.apply_defaults()
        return _run(command, bound.arguments)

    run.__name__ = run.__qualname__ = command.name
    run.__module__ = __name__
    run.__doc__ = command.doc()
    run.__signature__ = signature
    return run


def _is_array(value):
    return hasattr(value, "__array__") and not isinstance(value, (str, bytes, _os.PathLike))


def _array(value):
    """An array as the native module reads it in place: the C-contiguous ndarray (a view of
    ``value`` when it already is one, else a contiguous copy), its address, size, dtype, shape."""
    import numpy as np

    arr = np.ascontiguousarray(value)
    return {"owner": arr, "address": arr.__array_interface__["data"][0], "nbytes": arr.nbytes,
            "dtype": arr.dtype.str, "shape": list(arr.shape)}


def _attn_input(attn):
    """The ``attn`` entries of the input dict: paths, or the array read in place."""
    if _is_array(attn):
        return {"attn_array": _array(attn)}
    items = attn if isinstance(attn, (list, tuple)) else [attn]
    return {"attn": _fspaths(items)}


def _step_array(step):
    """One generation step as an (L, B, H, Q, K) array: a tuple of per-layer tensors (as
    ``generate()`` returns them) stacked, or one tensor; torch tensors are moved to the CPU and
    bfloat16 widened to float32 (exactly), which numpy cannot hold."""
    import numpy as np

    def array(t):
        if hasattr(t, "detach"):
            t = t.detach().cpu()
            return (t.float() if str(t.dtype) == "torch.bfloat16" else t).numpy()
        return np.asarray(t)

    return np.stack([array(t) for t in step]) if isinstance(step, (list, tuple)) else array(step)


def _steps_in_memory(attn, group):
    """With ``generation_steps``, steps given as tensors (``out.attentions``) rather than files
    become arrays read in place; True when they were."""
    if not group.get("generation_steps") or not isinstance(attn, (list, tuple)) or not attn:
        return False
    if isinstance(attn[0], (str, bytes, _os.PathLike)):
        return False
    group["attn_steps"] = [_array(_step_array(step)) for step in attn]
    group["attn"] = ["<attn steps>"]
    return True


def _tokens(value, group):
    if isinstance(value, (list, tuple)):
        lists = [list(map(str, r)) for r in value] if value and not isinstance(value[0], str) \
            else [list(map(str, value))]
        group["token_lists"] = lists
        return
    try:
        group["tokens"] = _os.fspath(value)
    except TypeError as e:
        raise TypeError(f"tokens: a file or a list of strings (or of lists), not {e}") from None


# A CLI flag in a message (`--attention-mask`, `-k`, `-o`) and the parameter it is here.
_FLAG = _re.compile(r"(?<![\w.-])(--[a-z][a-z0-9]*(?:-[a-z0-9]+)*|-[ko](?![\w-]))")


def _python_names(message):
    def name(m):
        flag = m.group(1)
        return {"-o": "out", "-k": "k"}.get(flag, flag.lstrip("-").replace("-", "_"))

    return _FLAG.sub(name, message)


def _run(command, arguments):
    groups = {"input": {}, "options": {}, "output": {}, "python": {}}
    first = arguments[command.first.name]
    for p in command.params:
        _put(p, arguments[p.name], groups)
    if command.first.group != "input":
        groups["options"][command.first.name] = _converted(command.first, first)
    elif not _steps_in_memory(first, groups["input"]):
        groups["input"].update(_attn_input(first))
    result = _native_call(command.call, groups)
    return _finish(result, groups["python"].get("as_arrow", False))


def _put(p, value, groups):
    """``value`` of parameter ``p`` into its group (None leaves it out)."""
    if value is None:
        return
    if p.name == "tokens" and p.group == "input":
        _tokens(value, groups["input"])
    else:
        groups[p.group][p.name] = value if p.convert is None else _converted(p, value)


def _native_call(function, *args):
    """``function(*args)``, its error messages naming Python parameters, not CLI flags."""
    try:
        return function(*args)
    except (ValueError, OSError, TypeError) as e:
        raise type(e)(_python_names(str(e))) from None


def _converted(p, value):
    """``p.convert(value)``, with a message that names the parameter."""
    try:
        return p.convert(value)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{p.name}: {e}") from None


def _finish(result, as_arrow):
    if not hasattr(result, "__arrow_c_stream__"):
        return result
    if as_arrow:
        import pyarrow as pa

        return pa.table(result)
    import polars as pl

    return pl.DataFrame(result)


def _frames(native):
    return lambda g: native(g["input"], g["options"], g["output"])


def _files_only(native):
    return lambda g: native(g["input"], g["options"])


_ATTN = _Param("attn", _REQUIRED, f"{_ARRAY_OR_PATH} | Sequence[{_PATH}]",
               "Attention (L, B, H, Q, K) by default, float16/32/64: a file (.npy, .npz, "
               ".safetensors, a torch.save .pt), several files or a glob (a dataset, one example "
               "each), or an array read in place.", "input")
_ATTN_ONE = _Param("attn", _REQUIRED, f"{_ARRAY_OR_PATH}",
                   "Attention (L, B, H, Q, K) by default, float16/32/64: a file or an array "
                   "read in place.", "input")
_FRAME_OUT = (_FRAME, "The frame (a ``pyarrow.Table`` with ``as_arrow=True``); None with ``out``.")
_WRITTEN = ("None", "The file is written atomically: it appears whole or not at all.")

_COMMANDS = [
    _Command("topk", "For every (batch, layer, head, query) the k highest-scoring keys.\n\n"
             "Columns: batch u32, layer u16, head u16, query_position u32, query_token, position u32 "
             "(the key), token, rank u32 (1-based; ties go to the lower position), score f32; "
             "tokens dictionary-encoded, null without tokens; ``example_id`` first for a dataset; "
             "with ``words``, first_piece/last_piece u32 after each position column.",
             _ATTN, [
                 _Param("k", 10, "int", "Keys per query, at least 1, clamped to the valid keys."),
                 _Param("all", False, "bool", "Rank every valid key (overrides ``k``)."),
                 _Param("nonzero", False, "bool", "Rank only keys whose score is > 0."),
             ] + _INPUT + _DATASET + _OUTPUT + _THREADS, _FRAME_OUT, _frames(_native.topk)),
    _Command("received", "Attention each key receives, summed over the valid queries.\n\n"
             "Columns: batch, layer, head (fewer with ``reduce``), position u32, token, score f32 "
             "(the sum, after min-max with ``normalize``), rank u32 (1 = receives most).",
             _ATTN, [
                 _Param("normalize", "none", "Literal['none', 'minmax']",
                        "Min-max over every selected (batch, layer, head, position) first."),
                 _Param("reduce", "none", "Literal['none', 'heads', 'layers', 'all']",
                        "Sum over heads, layers or both after normalising."),
                 _Param("k", None, "int | None", "Keep ranks ≤ k (default: every rank)."),
             ] + _INPUT + _DATASET + _OUTPUT + _THREADS, _FRAME_OUT, _frames(_native.received)),
    _Command("headstats", "Per-head statistics: smoothed entropy (nats), mean attention distance "
             "(positions), self/previous/next/[CLS]/[SEP]/punctuation mass, first-position mass "
             "and the ``sink`` flag (Xiao et al. 2023), head-detector scores.",
             _ATTN, [
                 _Param("cls_tokens", ("[CLS]", "<s>"), "Sequence[str]", "Tokens counted by cls_mass.",
                        "options", _strings),
                 _Param("sep_tokens", ("[SEP]", "</s>"), "Sequence[str]",
                        "Tokens counted by sep_mass.", "options", _strings),
                 _Param("punct_tokens", (".", ","), "Sequence[str]",
                        "Tokens counted by punct_mass.", "options", _strings),
                 _Param("sink_threshold", 0.3, "float",
                        "``sink`` is true when the first position receives more than this on "
                        "average (α₀)."),
                 _Param("pairs", None, f"{_PATH} | None",
                        "Also write the head × head Jensen–Shannon distances of the first batch row "
                        "here.", "options", _path),
             ] + _INPUT + _DATASET + _OUTPUT + _THREADS, _FRAME_OUT, _frames(_native.headstats)),
    _Command("similarity", "Attention against token attributions: cosine variants, Spearman, "
             "Pearson and Kendall tau-b (scipy's conventions) and the Jaccard overlap of the top "
             "sets, per batch row and scope (each head, each layer's mean, the mean of all).",
             _ATTN_ONE, [
                 _Param("attributions", _REQUIRED, _ARRAY_OR_PATH,
                        "(B, S) or (S,) float token attributions, e.g. captum's summed over the "
                        "hidden dimension.", "options", _array_or_path),
                 _Param("percentile", 95.0, "float",
                        "Percentile of the top sets, 0..100 (numpy's linear interpolation)."),
                 _Param("overlap", None, f"{_PATH} | None",
                        "Also write the positions in either top set here.", "options", _path),
                 _Param("example_ids", None, f"{_PATH} | None",
                        "One id per batch row (.txt): adds an ``example_id`` column.", "options",
                        _path),
             ] + _INPUT + _OUTPUT + _THREADS, _FRAME_OUT, _frames(_native.similarity)),
    _Command("rollout", "Attention rollout (Abnar & Zuidema 2020), ranked like ``topk`` without the "
             "head column: J_l = (0.5·mean_heads(A_l) + 0.5·I)·J_(l−1), rows renormalised. "
             "``layers`` picks the cumulative layers written; the chain runs through all.",
             _ATTN_ONE, [
                 _Param("fuse", "mean", "Literal['mean', 'max', 'min']",
                        "How heads are fused into one matrix per layer."),
                 _Param("k", 10, "int", "Keys per query, at least 1."),
                 _Param("all", False, "bool", "Rank every valid key (overrides ``k``)."),
                 _Param("relevance", None, f"{_PATH} | None",
                        "Also write per (batch, layer, position) the max over queries of J_l[q, k].",
                        "options", _path),
             ] + _INPUT + _OUTPUT + _THREADS, _FRAME_OUT, _frames(_native.rollout)),
    _Command("compare", "Run A (``attn``) against run B: B's channel blocks permuted into A's "
             "order, then per head cosine, Pearson, Spearman and mean absolute difference.",
             _ATTN_ONE, [
                 _Param("attn_b", _REQUIRED, _ARRAY_OR_PATH, "The second run, same shape as ``attn``.",
                        "options", _array_or_path),
                 _Param("channels_a", _REQUIRED, "Sequence[str] | str",
                        "Channel names of run A in token order (a list, or comma-separated).",
                        "options", _channel_list),
                 _Param("block", _REQUIRED, "int", "Tokens (time points) per channel block."),
                 _Param("channels_b", None, "Sequence[str] | str | None",
                        "Channel names of run B (default: A's order).", "options", _channel_list),
                 _Param("blocks", None, f"{_PATH} | None",
                        "Also write the channel × channel block means of both runs here.", "options",
                        _path),
                 _Param("plot", None, f"{_PATH} | None",
                        "Draw A, B reordered and A − B of one head here (.png or .svg).", "options",
                        _path),
                 _Param("layer", None, "int | None",
                        "Layer of the plotted head (default: the head with the lowest cosine)."),
                 _Param("head", None, "int | None", "Head of the plotted head."),
             ] + _FIGURE + _INPUT + _OUTPUT + _THREADS, _FRAME_OUT, _frames(_native.compare)),
    _Command("cluster", "KMeans (k-means++, scikit-learn's convergence) on the valid attention rows "
             "of one head, for each k; the chosen k has the highest silhouette.\n\n"
             "Columns: batch, layer, head, rows, query_position u32, query_token, cluster u32.",
             _ATTN_ONE, [
                 _Param("layer", _REQUIRED, "int", "Layer of the clustered head."),
                 _Param("head", _REQUIRED, "int", "Head of the clustered head."),
                 _Param("k_range", "2-9", "str", "Values of k to try, e.g. ``'2-9'`` (2 ≤ k < rows)."),
                 _Param("rows", "all", "Literal['all', 'even', 'odd', 'both']",
                        "Query rows: every valid row, the even or odd positions, or both apart."),
                 _Param("scores", None, f"{_PATH} | None",
                        "Also write k, silhouette, inertia and chosen for every k here.", "options",
                        _path),
                 _Param("seed", 0, "int", "Seed of the k-means++ initialisation."),
                 _Param("n_init", 10, "int", "KMeans restarts per k, at least 1 (lowest inertia kept)."),
                 _Param("features", None, f"{_ARRAY_OR_PATH} | None",
                        "(S, F) or (B, S, F) float input features per query position.", "options",
                        _array_or_path),
                 _Param("coefs", None, f"{_PATH} | None",
                        "Write the one-vs-rest linear SVM from features to clusters here.", "options",
                        _path),
                 _Param("svm_c", 1.0, "float", "Penalty C of the linear SVM (L2, hinge loss)."),
                 _Param("plot", None, f"{_PATH} | None",
                        "Composite figure here (.png or .svg).", "options", _path),
             ] + _FIGURE + _INPUT + _OUTPUT + _THREADS, _FRAME_OUT, _frames(_native.cluster)),
    _Command("melt", "Any tensor as a long frame: one index column per axis (layer/head u16, "
             "others u32), then ``value`` (f32 for floats, i64 for integers, bool).",
             _Param("attn", _REQUIRED, f"{_PATH} | Sequence[{_PATH}]",
                    "The tensor file (.npy, .npz, .safetensors, .pt), any dtype; with "
                    "``generation_steps``, the steps' files or the one file holding every step.",
                    "options", _paths),
             [
                 _Param("axes", None, "Sequence[str] | str | None",
                        "One column name per axis, e.g. ``['layer', 'head', 'position', 'dim']``; "
                        "empty for a 0-d tensor. Needed unless ``generation_steps``.", "options",
                        _axes),
                 _Param("generation_steps", False, "bool",
                        "``attn`` holds the steps of one ``generate()`` call: columns batch, layer, "
                        "head, query_position, position, value over the whole sequence, each row "
                        "over the keys its step holds (with a KV cache: keys 0..query_position)."),
                 _Param("attn_key", None, "str | None",
                        "Array name inside .npz/.safetensors/.pt, or a pattern stacked as a first axis."),
                 _Param("tokens", None, f"{_PATH} | None",
                        "Tokens for the axes named position / query_position.", "options", _path),
             ] + _OUTPUT + _THREADS, _FRAME_OUT,
             lambda g: _native.melt(g["options"], g["output"])),
    _Command("plot", "A heatmap of one head, a layer × head grid (PNG/SVG), or a token text heatmap "
             "(HTML/LaTeX) of the first selected batch row.",
             _ATTN_ONE, [
                 _Param("out", _REQUIRED, _PATH,
                        ".png or .svg (heatmaps), .html or .tex (``text``).", "options", _path),
                 _Param("layer", None, "int | None", "Layer of the head to draw."),
                 _Param("head", None, "int | None", "Head to draw."),
                 _Param("grid", False, "bool", "Every selected layer (rows) × head (columns)."),
                 _Param("shared_scale", False, "bool", "One colour scale for every panel of a grid."),
                 _Param("channels", None, "Sequence[str] | str | None",
                        "Channel names in token order: dividers and names instead of tokens.",
                        "options", _channel_list),
                 _Param("block", None, "int | None", "Tokens (time points) per channel block."),
                 _Param("text", False, "bool",
                        "Token text heatmap: each token coloured by the attention it receives."),
             ] + _FIGURE + _INPUT + _THREADS, _WRITTEN, _files_only(_native.plot)),
    _Command("view", "One self-contained HTML page to explore attention: layer × head overview, "
             "one head with pan and zoom, top-k on hover, text coloured by received attention, "
             "the headstats table.",
             _ATTN_ONE, [
                 _Param("out", _REQUIRED, _PATH, "The page (.html): no network, opens with a double "
                        "click.", "options", _path),
                 _Param("k", 10, "int", "Keys listed per query on hover, 1..1000."),
                 _Param("colormap", "viridis", "Literal['viridis', 'nipy_spectral', 'purples']",
                        "Colour map of the heatmaps."),
                 _Param("thumbnail", 64, "int", "Thumbnail side in cells at most, 8..256."),
                 _Param("max_detail", 1024, "int", "Side of a head's heatmap in cells at most."),
                 _Param("detail_kib", 48, "int",
                        "Compressed heatmap KiB per head on average: the finest level that fits."),
                 _Param("title", None, "str | None", "Page title (default: the file's name)."),
             ] + _INPUT + _THREADS, _WRITTEN, _files_only(_native.view)),
    _Command("dense", "Longformer's sliding-window (and global) attention as a dense (L, B, H, S, S) "
             "float32 .npy, written one row at a time.",
             _ATTN_ONE, [
                 _Param("out", _REQUIRED, _PATH, "The .npy file.", "options", _path),
             ] + _INPUT + _THREADS, _WRITTEN, _files_only(_native.dense)),
    _Command("inspect", "Shape, dtype, container, layout, row-sum ranges and NaN/Inf counts of "
             "tensor files.",
             _Param("files", _REQUIRED, f"{_PATH} | Sequence[{_PATH}]", "Tensor files.", "options",
                    lambda v: [_os.fspath(x) for x in (v if isinstance(v, (list, tuple)) else [v])]),
             [
                 _Param("attn_key", None, "str | None", "Array name inside .npz/.safetensors/.pt."),
                 _Param("layout", None, "str | None", "Axis letters for the row-sum statistics."),
             ], ("list[dict[str, Any]]", "One summary per file, as ``attnframes inspect --json``."),
             lambda g: _json.loads(_native.inspect(g["options"]))),
]

# What each batch of a stream brings; everything else is the stream's, given once.
_PER_BATCH = ("tokens", "attention_mask", "padding_mask", "input_ids", "vocab", "head_importance",
              "global_attn", "global_mask")
# The extra outputs only their command writes, over a file.
_NOT_STREAMED = {"tokens_dir", "example_id_from", "relevance", "pairs"}
_STREAMED = ("topk", "received", "headstats", "rollout")
# Rollout is no dataset command, but its stream writes one as the others' do.
_STREAM_DATASET = [p for p in _DATASET if p.name in ("partition_by", "max_rows_per_file", "shard")]


def _example_ids(value):
    """One ``str`` id per batch row: a sequence of anything with a text form (numbers, numpy or
    torch scalars), not one string."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        raise TypeError("example_ids: one id per batch row (a list), not one string")
    return [str(i.item() if hasattr(i, "item") else i) for i in value]


class Stream(Finishing):
    """Batches of attention into one output as they arrive (``attnframes.stream``).

    Each :meth:`add` analyses one batch at once and keeps only its frames, so a study of many
    batches holds one batch's attention at a time. Rows equal those of the CLI's dataset run
    over the same batches saved as files with ``--example-id-from index``. Used as a context
    manager, the output is finished on leaving the block (the frame, for memory output, is in
    :attr:`result`) and removed if the block raised.
    """

    def __init__(self, native, as_arrow, command=None, options=None):
        self._native, self._as_arrow = native, as_arrow
        self._command, self._options = command, dict(options or {})
        self._batch_input = None
        self.result = None

    def add(self, attn, *, tokens=None, attention_mask=None, padding_mask=None, input_ids=None,
            vocab=None, head_importance=None, global_attn=None, global_mask=None,
            example_ids=None, layer=None, step=None):
        """Analyses one batch, or with ``layer`` one layer of a batch, and writes its frames.

        Parameters
        ----------
        attn : numpy.ndarray | torch.Tensor | str | os.PathLike[str]
            The batch's attention (L, B, H, Q, K) unless the stream's ``layout`` says otherwise;
            with ``layer``, that layer's (B, H, Q, K). float16/32/64, read in place (a torch CPU
            tensor works through numpy).
        tokens, attention_mask, padding_mask, input_ids, vocab, head_importance, global_mask
            As for ``topk``, for this batch: (B, S) masks and ids, S tokens per row. With
            ``layer``, given with layer 0 (a ValueError with a later layer) and kept for the
            batch's later layers.
        global_attn : numpy.ndarray | torch.Tensor | str | os.PathLike[str] | None
            Longformer's global attentions of this batch (or, with ``layer``, of this layer,
            (1, B, H, S_pad, x) as ``attn`` is then (1, B, H, S, x + w + 1)); the stream takes
            ``sliding_window=True`` for Longformer without global tokens.
        example_ids : Sequence[str] | None
            One id per batch row; default the batch's running index (``i``, or ``i:row`` for a
            batch of several rows). With ``layer``, given with layer 0.
        layer : int | None
            This layer's index, 0-based. Layer 0 starts a batch; its layers arrive in order and
            the batch is finished at its last layer (``num_layers``), at the next layer 0, or
            when the stream closes. Only what the command needs of a layer is kept until then
            (topk's frames, received's column sums, headstats' rows, rollout's chain). A layer
            that raises drops its batch, whose rows are then not written; the next batch starts
            at layer 0.
        step : int | None
            With ``layer``, topk only: the generation step (``generate()`` with a KV cache). Step
            0 is the prompt (B, H, P, P); each later step is one query per row (B, H, 1, P + t)
            at the last position, with that step's masks and tokens given with its layer 0. The
            steps of a batch are one example per row, written when the next step 0 comes or the
            stream closes, in the order of one forward pass over the whole sequence.

        Raises
        ------
        ValueError
            As ``topk``; with ``layer``, naming the layer and the batch: a layer out of order or
            past ``num_layers``, not 4-D, with another B, H, Q or K than the batch's layer 0, or
            a batch missing a layer.
        OSError, TypeError
            As ``topk``. The stream stays open and what was added before is kept.
        """
        arguments = dict(tokens=tokens, attention_mask=attention_mask, padding_mask=padding_mask,
                         input_ids=input_ids, vocab=vocab, head_importance=head_importance,
                         global_mask=global_mask)
        if step is not None and layer is None:
            raise ValueError("step: give the layer too")
        self._layer_input(arguments, example_ids, 0 if layer is None else layer)
        batch_input = self._batch_input
        if layer is None:
            self._batch_input = None
        this = dict(batch_input, **_attn_input(attn))
        if global_attn is not None:
            this["global_attn"] = _array_or_path(global_attn)
        _native_call(self._native.add, this, _example_ids(example_ids),
                     None if layer is None else _index(layer),
                     None if step is None else _index(step))

    def add_reduced(self, reduced, *, layer, step=None, tokens=None, attention_mask=None,
                    padding_mask=None, example_ids=None):
        """Adds one layer reduced where it was computed (``attnframes._device``, on a GPU):
        topk takes its ranked keys, received its sums, and each writes the rows it would have
        written from the layer itself. Other commands, and topk with ``all``, ``nonzero`` or
        ``words``, need the layer (:meth:`add`).

        Parameters
        ----------
        reduced : attnframes._device.Reduced
            The layer's Q and K, ranked keys (B, H, Q, k) and received sums (B, H, K), numpy
            arrays read in place.
        layer, step, tokens, attention_mask, padding_mask, example_ids
            As for :meth:`add` with ``layer``.

        Raises
        ------
        ValueError
            As :meth:`add`; ranked keys fewer than the stream's ``k``; a reduced layer given
            to a command that needs the attention rows.
        """
        arrays = {name: _array(value) for name, value in
                  (("positions", reduced.positions), ("scores", reduced.scores),
                   ("sums", reduced.sums)) if value is not None}
        self._layer_input(dict(tokens=tokens, attention_mask=attention_mask,
                               padding_mask=padding_mask), example_ids, layer)
        found = dict(non_finite_index=reduced.non_finite[0],
                     non_finite_value=reduced.non_finite[1]) if reduced.non_finite else {}
        this = dict(self._batch_input, attn=["<attn array>"],
                    reduced=dict(arrays, queries=reduced.queries, keys=reduced.keys, **found))
        _native_call(self._native.add, this, _example_ids(example_ids), _index(layer),
                     None if step is None else _index(step))

    def _layer_input(self, arguments, example_ids, layer):
        """Keeps a batch's inputs, given with its layer 0, for its later layers."""
        if layer != 0:
            given = [name for name, v in dict(arguments, example_ids=example_ids).items()
                     if v is not None]
            if given:
                raise ValueError(f"{given[0]}: a batch's {given[0]} come with its layer 0, not "
                                 f"with layer {layer}")
            self._batch_input = self._batch_input or {}
            return
        groups = {"input": {}}
        for p in _INPUT:
            if p.name in arguments:
                _put(p, arguments[p.name], groups)
        self._batch_input = groups["input"]

    def close(self):
        """Finishes the output (renamed into place, or a dataset's parts and ``_SUCCESS``);
        returns the frame for memory output, else None."""
        self._batch_input = None
        self.result = _finish(_native_call(self._native.finish), self._as_arrow)
        self._closed = True
        return self.result

    def abort(self):
        """Drops the stream unfinished: nothing it wrote is left."""
        self._native.abort()


def stream(command, *, out=None, num_layers=None, **options):
    """A :class:`Stream` of ``command`` ('topk', 'received', 'headstats' or 'rollout') to ``out``.

    ``out`` is a file (.parquet, .csv, .arrow), a dataset directory ``'dir/'`` (with
    ``partition_by``, ``max_rows_per_file``, ``shard``), or None for a frame in memory
    (``Stream.result`` after the ``with`` block). The other keywords are the command's own
    (``k``, ``normalize``, ``layers``, ``row_group_size``, ...), except what each batch brings
    to :meth:`Stream.add` (tokens, masks, ids, head importance). ``num_layers``, for batches
    added layer by layer, finishes each batch at its last layer (default: the next layer 0
    or the end finishes it, and the first batch's count holds for the rest); a ``layers``
    selection over batches added layer by layer needs it. An output no batch reached still
    gets the command's columns.

    >>> with af.stream("topk", k=10, out="frames/topk/", partition_by=["layer"]) as s:  # doctest: +SKIP
    ...     for attn, tokens in batches:
    ...         s.add(attn, tokens=tokens)

    Raises
    ------
    TypeError
        A keyword the command does not take, or one that belongs to ``Stream.add``.
    ValueError, OSError
        As the command; an output that cannot be created.
    """
    spec = next((c for c in _COMMANDS if c.name == command), None)
    if command not in _STREAMED or spec is None:
        raise ValueError("command: expected one of 'topk', 'received', 'headstats', 'rollout'; "
                         f"got {command!r}")
    allowed = {p.name: p for p in spec.params + _STREAM_DATASET
               if p.name not in _NOT_STREAMED and p.name not in _PER_BATCH}
    groups = {"input": {}, "options": {}, "output": {}, "python": {}}
    for name, value in dict(options, out=out).items():
        if name not in allowed:
            raise TypeError(f"stream() got an unexpected keyword argument {name!r}")
        _put(allowed[name], value, groups)
    native = _native_call(_native.stream, command, groups["input"], groups["options"],
                          groups["output"])
    if num_layers is not None:
        native.set_layers_per_batch(_index(num_layers))
    return Stream(native, groups["python"].get("as_arrow", False), command, options)


def capture(model, *, tokenizer=None, modules=None, device_reductions=None, **streams):
    """Streams of a model's attention, taken as each layer computes it (forward hooks).

    The model runs without ``output_attentions``, so it never holds every layer; each attention
    module's weights (B, H, Q, K) go to the streams when the module returns and are not kept,
    only the frames are. Needs ``torch`` (``pip install attnframes[torch]``).

    >>> with af.capture(model, tokenizer=tok,  # doctest: +SKIP
    ...                 topk=dict(k=10, out="frames/topk/", partition_by=["layer"]),
    ...                 received=dict(normalize="minmax", out="frames/received/"),
    ...                 headstats=dict(out="frames/headstats.parquet")) as cap:
    ...     for texts in batches:
    ...         cap(**tok(texts, return_tensors="pt", padding=True))

    Parameters
    ----------
    model : torch.nn.Module
        A transformers model loaded with ``attn_implementation="eager"`` (BERT, RoBERTa,
        DistilBERT, GPT-2, Llama-family, ViT, and any model whose ``_can_record_outputs``
        names its attention modules), or any module with ``modules=``.
    tokenizer : transformers tokenizer | None
        Gives each row's tokens (``convert_ids_to_tokens`` of ``input_ids``); default none.
    modules : Sequence[str | torch.nn.Module] | None
        The attention modules whose output (or its element 1, for a tuple) is the (B, H, Q, K)
        weights; the ``layer`` of each is its place in this list, 0-based. Default: those
        ``_can_record_outputs`` names, in the model's order. An encoder-decoder needs it (one
        stack's modules: their lengths differ).
    topk, received, headstats, rollout : dict
        One stream each: the options of :func:`stream` (``out`` and the command's own), e.g.
        ``topk=dict(k=10, out="frames/topk/")``. At least one. Rollout keeps one S × S chain
        per batch row, never the layers before.
    device_reductions : bool | None
        Where the attention is on a GPU (CUDA), topk (with ``k``) and received reduce each
        layer there (``attnframes._device``) and only their results, (B, H, Q, k) ranked keys
        and (B, H, K) sums, are copied to the host; the other streams get the layer through a
        pinned host copy. Either way a worker thread builds the frames while the model goes
        on, at most two layers behind (the model waits when it is). The frames are those of
        the CPU path, byte for byte. Default None: so on a GPU, the plain path on the CPU;
        False: copies only, also on a GPU; True: reduce with torch on any device.

    Returns
    -------
    Capture
        Call it with a batch's model inputs (``cap(**encoding, example_ids=None)``) to run the
        model under ``torch.no_grad()``; it returns the model's output. Only those calls are
        captured: the model called otherwise, ``model.generate`` included, runs as without
        hooks.

    Raises
    ------
    ValueError
        A fused attention implementation (SDPA, flash), which returns no weights: the message
        names ``attn_implementation="eager"``; a model with no attention modules found; an
        encoder-decoder without ``modules``; a module listed twice; two streams with one
        ``out``; a stream's own options (``k=0``, ``pairs``, ``relevance``).
    TypeError
        An unknown stream, its options not a dict, or ``device_reductions`` not a bool or
        None.
    """
    return Capture(model, tokenizer, modules, streams, device_reductions)


for _command in _COMMANDS:
    globals()[_command.name] = _make(_command)
del _command


def _stub():
    """The text of ``__init__.pyi``, from the same table as the functions (a test keeps the
    committed stub equal to it)."""
    lines = ['"""Type stubs of attnframes (generated from attnframes._stub(); do not edit)."""',
             "import os", "from typing import Any, Literal, Sequence", "", "import numpy",
             "import polars", "import pyarrow", "", "__version__: str", ""]
    for c in _COMMANDS:
        params = [f"    {c.first.name}: {c.first.hint},", "    *,"]
        for p in c.params:
            default = "" if p.default is _REQUIRED else " = ..."
            params.append(f"    {p.name}: {p.hint}{default},")
        lines += [f"def {c.name}(", *params, f") -> {c.returns[0]}: ...", ""]
    return "\n".join(lines + _STREAM_STUB)


_STREAM_STUB = [
    "class Stream:",
    "    result: polars.DataFrame | pyarrow.Table | None",
    "    def add(",
    "        self,",
    "        attn: str | os.PathLike[str] | numpy.ndarray,",
    "        *,",
    *[f"        {p.name}: {p.hint} = ...," for p in _INPUT if p.name in _PER_BATCH],
    "        example_ids: Sequence[str] | None = ...,",
    "        layer: int | None = ...,",
    "        step: int | None = ...,",
    "    ) -> None: ...",
    "    def add_reduced(",
    "        self,",
    "        reduced: Any,",
    "        *,",
    "        layer: int,",
    "        step: int | None = ...,",
    "        tokens: str | os.PathLike[str] | Sequence[str] | Sequence[Sequence[str]] | None = ...,",
    "        attention_mask: str | os.PathLike[str] | numpy.ndarray | None = ...,",
    "        padding_mask: str | os.PathLike[str] | numpy.ndarray | None = ...,",
    "        example_ids: Sequence[str] | None = ...,",
    "    ) -> None: ...",
    "    def close(self) -> polars.DataFrame | pyarrow.Table | None: ...",
    "    def abort(self) -> None: ...",
    "    def __enter__(self) -> Stream: ...",
    "    def __exit__(self, *args: Any) -> Literal[False]: ...",
    "",
    "class Capture:",
    "    results: dict[str, polars.DataFrame | pyarrow.Table]",
    "    @property",
    "    def modules(self) -> list[str]: ...",
    "    def __call__(self, *, example_ids: Sequence[str] | None = ..., **encoding: Any) -> Any: ...",
    "    def generate(self, *, example_ids: Sequence[str] | None = ..., **kwargs: Any) -> Any: ...",
    "    def close(self) -> dict[str, polars.DataFrame | pyarrow.Table]: ...",
    "    def abort(self) -> None: ...",
    "    def __enter__(self) -> Capture: ...",
    "    def __exit__(self, *args: Any) -> Literal[False]: ...",
    "",
    "def capture(",
    "    model: Any,",
    "    *,",
    "    tokenizer: Any = ...,",
    "    modules: Sequence[Any] | None = ...,",
    "    device_reductions: bool | None = ...,",
    "    topk: dict[str, Any] = ...,",
    "    received: dict[str, Any] = ...,",
    "    headstats: dict[str, Any] = ...,",
    "    rollout: dict[str, Any] = ...,",
    ") -> Capture: ...",
    "",
    "def stream(",
    "    command: Literal['topk', 'received', 'headstats', 'rollout'],",
    "    *,",
    "    out: str | os.PathLike[str] | None = ...,",
    "    num_layers: int | None = ...,",
    "    **options: Any,",
    ") -> Stream: ...",
    "",
]
