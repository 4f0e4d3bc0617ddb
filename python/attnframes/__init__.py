"""attnframes from Python: transformer attention as long-format frames, without a subprocess.

Every function runs the attnframes command of the same name through the CLI's own parser, so
options, defaults and messages are the CLI's (see ``attnframes <command> --help``). Keyword
arguments become flags: ``attention_mask="m.npy"`` is ``--attention-mask m.npy``, ``all=True``
is ``--all``, lists are joined with commas (``partition_by=["layer", "head"]``), and
``shard=(i, n)`` is ``--shard i/n``.

``attn`` is a path, a list of paths or globs (one example each: a dataset), or a numpy array
(``torch.stack(outputs.attentions).numpy()``, with ``layout=`` when it is not LBHQK). Arrays
given for ``attn``, ``attention_mask``, ``head_importance``, ``input_ids`` or
``attributions`` are copied once into an anonymous in-memory file, not to disk; ``tokens``
may be a list of strings (or a list of lists per batch row).

Without ``out`` the result comes back as a ``polars.DataFrame`` (or a ``pyarrow.Table`` with
``as_arrow=True``), handed over through the Arrow C stream interface without copying. With
``out`` the command writes it (a file, or a dataset directory ``"out/"``) and returns None.

Errors raise ``ValueError`` (bad options or input) or ``OSError`` (a file that cannot be
opened, read or written) with the CLI's message.

>>> import attnframes as af
>>> df = af.topk("attentions.npy", tokens="tokens.json", k=10)          # doctest: +SKIP
>>> tbl = af.received("attentions.npy", normalize="minmax", as_arrow=True)  # doctest: +SKIP
>>> af.topk(["a.npy", "b.npy"], k=10, out="out/", partition_by=["layer"])  # doctest: +SKIP
"""

import json
import os

from . import _native

__version__ = _native.__version__
__all__ = ["topk", "received", "headstats", "similarity", "rollout", "melt", "cluster", "compare"]

# Options that name an input file and so may be given as an array instead.
_ARRAY_OPTIONS = {"attention_mask", "head_importance", "input_ids", "attributions", "features", "attn_b"}


class _Inputs:
    """In-memory files for arrays and token lists, closed when the call returns."""

    def __init__(self):
        self._fds = []
        self.names = {}

    def _memfile(self, write, label):
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create(f"attnframes-{label}")
            path = f"/proc/self/fd/{fd}"
        else:  # not Linux: a temporary file
            import tempfile

            fd, path = tempfile.mkstemp(prefix=f"attnframes-{label}-", suffix=".npy")
        self._fds.append((fd, None if path.startswith("/proc/") else path))
        with os.fdopen(os.dup(fd), "wb") as f:
            write(f)
        self.names[path] = f"<{label} array>"
        return path

    def array(self, value, label):
        import numpy as np

        arr = np.ascontiguousarray(value)
        return self._memfile(lambda f: np.save(f, arr, allow_pickle=False), label)

    def tokens(self, value):
        # The extension tells the CLI it is JSON; memfd paths have none, so use a JSON-named
        # temporary only for this small list.
        import tempfile

        fd, path = tempfile.mkstemp(prefix="attnframes-tokens-", suffix=".json")
        self._fds.append((fd, path))
        with os.fdopen(os.dup(fd), "w") as f:
            json.dump(list(value), f)
        self.names[path] = "<tokens list>"
        return path

    def close(self):
        for fd, path in self._fds:
            os.close(fd)
            if path:
                os.unlink(path)

    def explain(self, message):
        for path, label in self.names.items():
            message = message.replace(path, label)
        return message


def _is_array(value):
    return hasattr(value, "__array__") and not isinstance(value, (str, bytes, os.PathLike))


def _flag(name):
    return "-" + name if len(name) == 1 else "--" + name.replace("_", "-")


def _argv(command, attn, options, inputs):
    argv = ["attnframes", command]
    if attn is not None:
        items = attn if isinstance(attn, (list, tuple)) else [attn]
        argv.append("--attn")
        argv += [inputs.array(a, "attn") if _is_array(a) else os.fspath(a) for a in items]
    for key, value in options.items():
        if value is None or value is False:
            continue
        if value is True:
            argv.append(_flag(key))
            continue
        if key == "tokens" and isinstance(value, (list, tuple)):
            value = inputs.tokens(value)
        elif key in _ARRAY_OPTIONS and _is_array(value):
            value = inputs.array(value, key)
        elif key == "shard" and isinstance(value, (list, tuple)):
            value = "/".join(str(v) for v in value)
        elif isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        argv += [_flag(key), os.fspath(value) if isinstance(value, os.PathLike) else str(value)]
    return argv


def _run(command, attn, out, as_arrow, options):
    inputs = _Inputs()
    try:
        argv = _argv(command, attn, options, inputs)
        argv += ["-o", os.fspath(out) if out is not None else "<memory>"]
        try:
            stream = _native.run(argv, out is None)
        except (ValueError, OSError) as e:
            raise type(e)(inputs.explain(str(e))) from None
    finally:
        inputs.close()
    if stream is None:
        return None
    if as_arrow:
        import pyarrow as pa

        return pa.table(stream)
    import polars as pl

    return pl.DataFrame(stream)


def _command(name, doc):
    def command(attn=None, *, out=None, as_arrow=False, **options):
        return _run(name, attn, out, as_arrow, options)

    command.__name__ = command.__qualname__ = name
    command.__doc__ = (
        f"{doc}\n\nThe CLI's `attnframes {name}`: keyword arguments are its flags "
        f"(see `attnframes {name} --help`). Returns a polars.DataFrame, a pyarrow.Table "
        "with as_arrow=True, or None with out=."
    )
    return command


topk = _command("topk", "For every (batch, layer, head, query) the k highest-scoring keys.")
received = _command("received", "Attention each key receives, summed over the valid queries.")
headstats = _command("headstats", "Per-head statistics: entropy, distance, token-class mass, sinks.")
similarity = _command("similarity", "Attention vs token attributions (attributions=...).")
rollout = _command("rollout", "Attention rollout (Abnar & Zuidema 2020) ranked like topk.")
melt = _command("melt", "Any tensor as a long frame: one index column per axis, then value.")
cluster = _command("cluster", "KMeans on the attention rows of one head; k by silhouette.")
compare = _command("compare", "Run vs run with channel blocks (attn_b=..., channels_a=..., block=...).")
