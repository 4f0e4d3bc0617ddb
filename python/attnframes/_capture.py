"""Attention straight from a running PyTorch model: forward hooks feed each layer's attention
probabilities to attnframes streams as the layer computes them, and nothing else keeps them."""

import os as _os
import queue as _queue
import sys as _sys
import threading as _threading
import warnings as _warnings

from . import _device
from ._finishing import Finishing

_STREAMED = ("topk", "received", "headstats", "rollout")

# Attention implementations that compute the probabilities in a fused kernel and return None.
_FUSED = ("sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")

# Longformer's self-attention returns its sliding-window and global probabilities only when
# asked (`output_attentions`), and transformers records them in no `_can_record_outputs`.
_LONGFORMER = "LongformerSelfAttention"


class Capture(Finishing):
    """Streams fed from a model's attention modules (``attnframes.capture``).

    Calling it runs the model on one batch; each attention module's weights (B, H, Q, K) go to
    every stream when that module returns, and are dropped by attnframes at once. Used as a
    context manager, the outputs are finished on leaving the block (frames for memory output
    in :attr:`results`) and removed, with the hooks, if the block raised.
    """

    def __init__(self, model, tokenizer, modules, streams, device_reductions=None):
        from . import stream  # the package imports this module first

        if not streams:
            raise TypeError("capture() needs a stream: topk=dict(...), received=dict(...), "
                            "headstats=dict(...) or rollout=dict(...)")
        for name, options in streams.items():
            if name not in _STREAMED:
                raise TypeError(f"capture() got an unexpected keyword argument {name!r} "
                                f"(streams: {', '.join(_STREAMED)})")
            if not isinstance(options, dict):
                raise TypeError(f"{name}: the stream's options as a dict, e.g. {name}=dict(out="
                                f"'frames/{name}/'), not {type(options).__name__}")
        _distinct_outputs(streams)
        if device_reductions not in (None, True, False):
            raise TypeError(f"device_reductions: True, False or None (on a GPU), not "
                            f"{device_reductions!r}")
        self._model, self._tokenizer = model, tokenizer
        self._modules = _attention_modules(model, modules)
        self._longformer = all(type(m).__name__ == _LONGFORMER for _, m, _ in self._modules)
        if modules is None and not self._longformer:
            check_implementation(model)
        layers = len(self._modules)
        self._streams = {}
        try:
            for name, options in streams.items():
                if self._longformer:
                    options = dict(options, sliding_window=True)
                self._streams[name] = stream(name, num_layers=layers, **options)
        except BaseException:
            self._abort()
            raise
        self._batch = None
        self._batches = 0
        self._device_reductions = device_reductions
        # Test hook: the worker thread also for CPU tensors, without device reductions.
        self._overlap = False
        self._pipeline = None
        self.results = {}
        self._handles = []
        for layer, (name, module, index) in enumerate(self._modules):
            if self._longformer:
                self._handles.append(module.register_forward_pre_hook(
                    _asking_for_attentions(self), with_kwargs=True))
            self._handles.append(module.register_forward_hook(self._hook(layer, name, index)))

    @property
    def modules(self):
        """The hooked attention modules' names, in layer order."""
        return [name for name, _, _ in self._modules]

    def __call__(self, *, example_ids=None, **encoding):
        """Runs the model on one batch (``model(**encoding)`` under ``torch.no_grad()``) and
        returns its output; each layer's attention goes to the streams as it is computed.

        Parameters
        ----------
        example_ids : Sequence[str] | None
            One id per batch row; default the batch's running index (``i:row``).
        **encoding
            The model's inputs: a tokenizer's encoding (``input_ids``, ``attention_mask``, ...)
            or ``pixel_values``. ``attention_mask`` (B, S) marks valid positions; tokens come
            from ``tokenizer.convert_ids_to_tokens(input_ids)`` when a tokenizer was given.

        Raises
        ------
        ValueError
            A layer's weights that are None (a fused attention implementation), not 4-D, or
            that do not fit the batch, naming the module, the layer and the batch; a batch in
            which an attention module did not run. The batch is dropped; the capture stays
            open for the next one (an exception leaving the ``with`` block removes every
            output).
        UserWarning
            Issued when the model is in training mode, where dropout changes attention
            (models built from a config start so; ``model.eval()``).
        """
        import torch

        from . import _example_ids

        if self._handles is None:
            raise ValueError("this capture is closed")
        self._warn_if_training()
        mask = encoding.get("attention_mask")
        global_mask = encoding.get("global_attention_mask")
        ids = encoding.get("input_ids")
        length = next((t.shape[1] for t in (ids, mask, encoding.get("inputs_embeds"))
                       if t is not None), None)
        tokens = None
        if self._tokenizer is not None and ids is not None:
            tokens = [self._tokenizer.convert_ids_to_tokens(row) for row in ids.tolist()]
        self._batch = dict(
            tokens=tokens,
            attention_mask=None if mask is None else mask.detach().cpu(),
            global_mask=None if global_mask is None else global_mask.detach().cpu(),
            length=length,
            example_ids=_example_ids(example_ids),
            next_layer=0,
            asked=False,
        )
        try:
            with torch.no_grad():
                output = self._model(**encoding)
            self._drain()
            self._check_all_layers_ran()
        except BaseException:
            # The batch's layers so far are dropped; the capture takes the next batch.
            self._drain(quiet=True)
            for s in self._streams.values():
                s._native.drop_batch()
            raise
        finally:
            self._batch = None
        self._batches += 1
        return output

    def generate(self, *, example_ids=None, **kwargs):
        """Runs ``model.generate(**kwargs)`` under ``torch.no_grad()`` with the hooks on and
        returns its output: each step's attention — the prompt (B, H, P, P), then one query per
        row (B, H, 1, P + t) at the last position — is ranked as it is produced, and no step is
        kept. The batch is one example per row over the whole generated sequence, its rows as
        one forward pass over that sequence would give them (the last generated token, never
        fed back, has none). Tokens cover the prompt and the generated ids when the capture has
        a tokenizer; the attention mask of each step (left padding) comes from ``generate``.

        Parameters
        ----------
        example_ids : Sequence[str] | None
            One id per batch row; default the batch's running index (``i:row``).
        **kwargs
            ``generate``'s: the encoding (``input_ids``, ``attention_mask``) and its options
            (``max_new_tokens``, ``do_sample``, ...).

        Raises
        ------
        ValueError
            A stream other than topk (received, headstats and rollout need the whole
            sequence: run ``cap(**encoding)`` over the generated one); beam search
            (``num_beams`` > 1) or any decoding whose batch changes between steps, since a
            row's attention then does not follow one sequence; as :meth:`__call__`.
        """
        import torch

        from . import _example_ids

        if self._handles is None:
            raise ValueError("this capture is closed")
        beams = _num_beams(self._model, kwargs)
        if beams > 1:
            raise ValueError(f"generate: beam search (num_beams={beams}) reorders its beams at "
                             "every step, so a row's attention does not follow one sequence: "
                             "capture greedy or sampled generation (num_beams=1), or run "
                             "cap(**encoding) over each returned sequence")
        others = [name for name in self._streams if name != "topk"]
        if others:
            raise ValueError(f"generate: only topk ranks each step as it is produced; "
                             f"{', '.join(others)} need the whole sequence (run cap(**encoding) "
                             "over the generated sequence)")
        self._warn_if_training()
        self._batch = dict(tokens=None, attention_mask=None, global_mask=None,
                           example_ids=_example_ids(example_ids), next_layer=0, asked=False,
                           length=None, step=-1, sequence=None)
        handle = self._model.register_forward_pre_hook(self._generation_step, with_kwargs=True)
        try:
            with torch.no_grad():
                output = self._model.generate(**kwargs)
            self._drain()
            self._check_all_layers_ran()
            for s in self._streams.values():
                s._native.end_batch()
        except BaseException:
            self._drain(quiet=True)
            for s in self._streams.values():
                s._native.drop_batch()
            raise
        finally:
            handle.remove()
            self._batch = None
        self._batches += 1
        return output

    def _generation_step(self, module, args, kwargs):
        """Before each forward pass of ``generate``: a new step, with the sequence so far."""
        import torch

        batch = self._batch
        if batch["step"] >= 0:
            self._check_all_layers_ran()
        batch["step"] += 1
        batch["next_layer"] = 0
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        if ids is not None:
            ids = ids.detach().cpu()
            seen = batch["sequence"]
            if seen is not None and ids.shape[0] != seen.shape[0]:
                raise ValueError(f"generate: step {batch['step']} ran {ids.shape[0]} rows after "
                                 f"{seen.shape[0]}: a decoding whose batch changes between steps "
                                 "(contrastive search, assisted generation) does not keep one "
                                 "sequence per row; capture greedy or sampled generation")
            batch["sequence"] = ids if seen is None else torch.cat([seen, ids], dim=1)
            batch["length"] = batch["sequence"].shape[1]
            if self._tokenizer is not None:
                batch["tokens"] = [self._tokenizer.convert_ids_to_tokens(row)
                                   for row in batch["sequence"].tolist()]
        batch["attention_mask"] = None if mask is None else mask.detach().cpu()

    def _check_all_layers_ran(self):
        ran = self._batch["next_layer"]
        if ran != len(self._modules):
            raise ValueError(f"layer {ran} of batch {self._batches}: missing: the model ran "
                             f"{ran} of its {len(self._modules)} attention modules")

    def _warn_if_training(self):
        if getattr(self._model, "training", False):
            _warnings.warn("the model is in training mode: dropout changes its attention; call "
                           "model.eval() first", UserWarning, stacklevel=3)

    def _hook(self, layer, name, index):
        import torch

        def hook(module, args, output):
            batch = self._batch
            if batch is None:
                return
            weights = output[index] if isinstance(output, (tuple, list)) else output
            extra = {}
            if self._longformer:
                weights, extra = _longformer_layer(output, batch)
            if weights is None:
                raise ValueError(_fused_message(self._model, name))
            if layer != batch["next_layer"]:
                raise ValueError(f"layer {layer} of batch {self._batches}: {name} ran out of "
                                 f"order: expected layer {batch['next_layer']}")
            if self._pipelined(weights):
                self._queue_layer(layer, name, weights, batch)
                batch["next_layer"] += 1
                return
            weights = _readable(weights, torch)
            extra = {k: _readable(v, torch) for k, v in extra.items()}
            first = layer == 0
            for s in self._streams.values():
                try:
                    s.add(weights, layer=layer, step=batch.get("step"), **extra,
                          tokens=batch["tokens"] if first else None,
                          attention_mask=batch["attention_mask"] if first else None,
                          global_mask=batch["global_mask"] if first else None,
                          example_ids=batch["example_ids"] if first else None)
                except ValueError as e:
                    raise ValueError(f"{name}: {e}") from None
            batch["next_layer"] += 1
            if self._longformer and not batch["asked"]:
                return output[:1]  # as without output_attentions: the model keeps nothing

        return hook

    def _pipelined(self, weights):
        """Whether this layer goes through the worker thread: on a GPU, or when asked."""
        if self._longformer:
            return False
        return (weights.device.type == "cuda" or self._device_reductions is True
                or self._overlap)

    def _queue_layer(self, layer, name, weights, batch):
        """Reduces the layer where it is for the streams that can take reductions, starts
        non-blocking copies of what goes to the host, and queues adding it to every stream."""
        import torch

        q, n = weights.shape[-2:]
        first = layer == 0
        meta = dict(tokens=batch["tokens"], attention_mask=batch["attention_mask"],
                    example_ids=batch["example_ids"]) if first else {}
        step = batch.get("step")
        on_gpu = weights.device.type == "cuda"
        reduce = self._device_reductions is True or (self._device_reductions is None and on_gpu)
        valid_keys, valid_queries = self._device_masks(batch, weights)
        jobs, host_layer, non_finite = [], None, None
        for s in self._streams.values():
            kind = _reducible(s) if reduce and valid_keys is not False else None
            if kind is None:
                if host_layer is None:
                    host_layer = _to_host(_floating(weights, torch), torch)
                jobs.append((s, None))
                continue
            if kind == "topk":
                positions, scores = _device.topk(weights, s._options.get("k", 10),
                                                 valid_keys=valid_keys)
                red = dict(positions=_to_host(positions, torch), scores=_to_host(scores, torch))
            else:
                sums = _device.received_sums(weights, valid_queries=valid_queries)
                red = dict(sums=_to_host(sums, torch))
            if non_finite is None and not s._options.get("allow_nan"):
                index, value = _device.first_non_finite(weights, valid_queries)
                non_finite = (_to_host(index, torch), _to_host(value, torch))
            jobs.append((s, red))
        event = None
        if on_gpu:
            event = torch.cuda.Event()
            event.record()

        def add_layer():
            if event is not None:
                event.synchronize()
            found = None
            if non_finite is not None and int(non_finite[0]) >= 0:
                found = (int(non_finite[0]), float(non_finite[1]))
            for s, red in jobs:
                try:
                    if red is not None:
                        arrays = {k: v.numpy() for k, v in red.items()}
                        s.add_reduced(_device.Reduced(q, n, **arrays, non_finite=found),
                                      layer=layer, step=step, **meta)
                    else:
                        s.add(host_layer, layer=layer, step=step, **meta)
                except ValueError as e:
                    raise ValueError(f"{name}: {e}") from None

        if self._pipeline is None:
            self._pipeline = _Pipeline()
        self._pipeline.put(add_layer)

    def _device_masks(self, batch, weights):
        """(valid keys (B, K), valid queries (B, Q)) as bool tensors on the layer's device, or
        (None, None) without a mask, or (False, False) when the mask does not fit the layer
        (then the layer goes to the host, where its error is raised)."""
        import torch

        mask = batch["attention_mask"]
        if mask is None:
            return None, None
        q, n = weights.shape[-2:]
        if mask.dim() != 2 or mask.shape[1] != n:
            return False, False
        key = (weights.device, batch.get("step"))
        cached = batch.get("device_mask")
        if cached is None or cached[0] != key:
            cached = (key, mask.to(weights.device).ne(0))
            batch["device_mask"] = cached
        keys = cached[1]
        return keys, (keys[:, n - q:] if q <= n else None)

    def _drain(self, quiet=False):
        """Waits until the worker thread has added every queued layer; raises what it raised
        (unless ``quiet``)."""
        if self._pipeline is not None:
            self._pipeline.drain(quiet)

    def close(self):
        """Removes the hooks and finishes every output; returns :attr:`results`, the frames of
        the streams with memory output by stream name."""
        if self._handles is None:
            raise ValueError("this capture is closed")
        self._remove_hooks()
        self._stop_pipeline()
        for name, s in self._streams.items():
            result = s.close()
            if result is not None:
                self.results[name] = result
        self._closed = True
        return self.results

    def abort(self):
        """Removes the hooks and drops every output unfinished: nothing written is left."""
        self._remove_hooks()
        self._stop_pipeline(quiet=True)
        self._abort()

    def _stop_pipeline(self, quiet=False):
        if self._pipeline is not None:
            pipeline, self._pipeline = self._pipeline, None
            pipeline.stop(quiet)

    def _abort(self):
        for s in self._streams.values():
            s.abort()

    def _remove_hooks(self):
        for handle in self._handles or ():
            handle.remove()
        self._handles = None


class _Pipeline:
    """One worker thread that adds queued layers to the streams in order, so the model goes on
    while attnframes builds frames; at most ``depth`` layers wait (``put`` blocks, and so does
    the model, when they do). The native calls run without the GIL."""

    # While a model's thread runs Python (a forward pass launching GPU kernels), another
    # thread waits up to the switch interval (5 ms by default) for the GIL each time it comes
    # back from native code: several times a layer, which starved the worker.
    SWITCH_INTERVAL_S = 1e-4

    def __init__(self, depth=2):
        self._queue = _queue.Queue(maxsize=depth)
        self._error = None
        self._interval = _sys.getswitchinterval()
        _sys.setswitchinterval(min(self._interval, self.SWITCH_INTERVAL_S))
        self._thread = _threading.Thread(target=self._run, name="attnframes-capture",
                                         daemon=True)
        self._thread.start()

    def put(self, add_layer):
        """Queues ``add_layer``; raises first what an earlier one raised."""
        self._raise_pending()
        self._queue.put(add_layer)

    def drain(self, quiet=False):
        self._queue.join()
        if quiet:
            self._error = None
        self._raise_pending()

    def stop(self, quiet=False):
        self._queue.put(None)
        self._thread.join()
        _sys.setswitchinterval(self._interval)
        if quiet:
            self._error = None
        self._raise_pending()

    def _raise_pending(self):
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _run(self):
        while True:
            add_layer = self._queue.get()
            try:
                if add_layer is None:
                    return
                if self._error is None:
                    add_layer()
            except BaseException as e:  # raised to the model's thread at its next call
                self._error = e
            finally:
                self._queue.task_done()


def _reducible(stream):
    """'topk' or 'received' when the stream can take a layer reduced on its device, else
    None (it needs the attention rows)."""
    o = stream._options
    if o.get("words"):
        return None
    if stream._command == "topk" and not (o.get("all") or o.get("nonzero")):
        return "topk"
    if stream._command == "received":
        return "received"
    return None


def _floating(weights, torch):
    """Detached, in a dtype attnframes reads (bfloat16 widened to float32 where it is)."""
    weights = weights.detach()
    if weights.dtype not in (torch.float16, torch.float32, torch.float64):
        weights = weights.float()
    return weights


def _to_host(tensor, torch):
    """``tensor`` on the host: itself when there, else a pinned buffer filled by a
    non-blocking copy (complete once the layer's event has)."""
    if tensor.device.type == "cpu":
        return tensor
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    return host


def _readable(weights, torch):
    """The weights as attnframes reads them in place: detached, on the CPU, float16/32/64."""
    weights = weights.detach()
    if weights.device.type != "cpu":
        weights = weights.cpu()
    if weights.dtype not in (torch.float16, torch.float32, torch.float64):
        weights = weights.float()
    return weights


def _asking_for_attentions(capture):
    """A pre-hook that has a Longformer module return its probabilities, noting whether the
    caller asked for them too (then they stay in its output)."""
    def hook(module, args, kwargs):
        if capture._batch is not None:
            capture._batch["asked"] = bool(kwargs.get("output_attentions"))
        return args, dict(kwargs, output_attentions=True)

    return hook


def _num_beams(model, kwargs):
    """The beams ``model.generate(**kwargs)`` searches with: its argument, else the
    generation config's (given, else the model's), else 1."""
    if kwargs.get("num_beams") is not None:
        return int(kwargs["num_beams"])
    config = kwargs.get("generation_config") or getattr(model, "generation_config", None)
    return int(getattr(config, "num_beams", None) or 1)


def _longformer_layer(output, batch):
    """One Longformer layer as transformers stacks it in ``attentions`` and
    ``global_attentions``: the sliding window (1, B, H, S, x + w + 1), queries cut to the input
    length, and the global probabilities (1, B, H, S_pad, x) when there are global tokens."""
    if len(output) < 2:
        return None, {}
    local = output[1].transpose(1, 2)
    if batch["length"] is not None:
        local = local[:, :, :batch["length"]]
    extra = {}
    if len(output) > 2:
        extra["global_attn"] = output[2].transpose(2, 3).unsqueeze(0)
    return local.unsqueeze(0), extra


def _distinct_outputs(streams):
    """Two streams writing one file or directory would overwrite each other."""
    seen = {}
    for name, options in streams.items():
        out = options.get("out")
        if out is None:
            continue
        key = _os.path.abspath(_os.fspath(out))
        if key in seen:
            raise ValueError(f"{name}: out {_os.fspath(out)!r} is {seen[key]}'s output too; "
                             "give each stream its own")
        seen[key] = name


def _attention_modules(model, modules):
    """``(name, module, output index)`` of each attention module, in the model's order."""
    if modules is not None:
        return _named(model, modules)
    config = getattr(model, "config", None)
    if getattr(config, "is_encoder_decoder", False):
        raise ValueError(f"{type(model).__name__} is an encoder-decoder: its encoder's and "
                         "decoder's self-attention have different lengths, so name the modules "
                         "of one stack with modules= (e.g. the encoder's)")
    found = []
    for prefix, owner in model.named_modules():
        specs = getattr(owner, "_can_record_outputs", None)
        if not specs or "attentions" not in specs:
            continue
        for spec in _as_list(specs["attentions"]):
            found += _matching(owner, prefix, spec)
        break
    if not found:
        found = [(name, m, 1) for name, m in model.named_modules()
                 if type(m).__name__ == _LONGFORMER]
    if not found:
        raise ValueError(f"{type(model).__name__}: no attention modules found (the model does "
                         "not name them in _can_record_outputs): give modules=[names]")
    seen = set()
    return [m for m in found if not (id(m[1]) in seen or seen.add(id(m[1])))]


def _as_list(value):
    return value if isinstance(value, (list, tuple)) else [value]


def _matching(owner, prefix, spec):
    """The modules under ``owner`` one ``_can_record_outputs`` entry names, as transformers'
    own output recorder matches them: a class, a class-name suffix, or an OutputRecorder with
    an output index and a module-name part."""
    if isinstance(spec, type):
        target, suffix, index, part = spec, None, 1, None
    elif isinstance(spec, str):
        target, suffix, index, part = None, spec, 1, None
    else:
        target = getattr(spec, "target_class", None)
        suffix = getattr(spec, "class_name", None)
        index = getattr(spec, "index", 1)
        part = getattr(spec, "layer_name", None)
    out = []
    for name, module in owner.named_modules(prefix=prefix):
        if not (target is not None and isinstance(module, target)
                or suffix is not None and name.endswith(suffix)):
            continue
        if part is not None and "." + part.strip(".") + "." not in name + ".":
            continue
        out.append((name, module, index))
    return out


def _named(model, modules):
    if isinstance(modules, str) or not hasattr(modules, "__iter__"):
        raise TypeError(f"modules: a list of module names or modules, not "
                        f"{type(modules).__name__}")
    by_name = dict(model.named_modules())
    names = {id(m): n for n, m in by_name.items()}
    out = []
    for m in modules:
        if isinstance(m, str):
            if m not in by_name:
                raise ValueError(f"modules: {type(model).__name__} has no module {m!r}")
            out.append((m, by_name[m], 1))
        elif id(m) in names:
            out.append((names[id(m)], m, 1))
        else:
            raise ValueError(f"modules: {type(m).__name__} is not a module of "
                             f"{type(model).__name__}")
    if not out:
        raise ValueError("modules: name at least one attention module")
    listed = [name for name, _, _ in out]
    twice = next((n for i, n in enumerate(listed) if n in listed[:i]), None)
    if twice is not None:
        raise ValueError(f"modules: {twice!r} is listed twice")
    return out


def _fused_message(model, name):
    config = getattr(model, "config", None)
    implementation = getattr(config, "_attn_implementation", None) or "a fused kernel"
    return (f"{name}: attention computed with {implementation!r} returns no weights (None); "
            "load the model with "
            'attn_implementation="eager" (from_pretrained(..., attn_implementation="eager") or '
            'model.set_attn_implementation("eager"))')


def check_implementation(model):
    """A fused attention implementation is known before the first batch: say so at once."""
    config = getattr(model, "config", None)
    implementation = getattr(config, "_attn_implementation", None)
    if implementation in _FUSED:
        raise ValueError(_fused_message(model, type(model).__name__))
