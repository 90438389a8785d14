"""The public logging API: ``LayerDynamics`` and ``log_layer_dynamics``.

A tracker ties the pieces together for one (model, writer) pair: ``layers`` says what to measure and
in which order, ``reduce`` holds the snapshots and runs the pass, ``distributed`` says who measures
and writes, ``metrics`` turns sums into values, ``writer`` writes them.
"""

import collections
import os
import time
import warnings
import weakref

import numpy as np
import torch
from torch import nn

from tb_layerdyn.tracking import distributed
from tb_layerdyn.tracking import guards
from tb_layerdyn.tracking import layers as layers_mod
from tb_layerdyn.tracking import metrics
from tb_layerdyn.tracking.attach import Attachment
from tb_layerdyn.tracking.computed import ComputedWeights
from tb_layerdyn.tracking import pictures
from tb_layerdyn.tracking import sketch
from tb_layerdyn.format import layer_metrics
from tb_layerdyn.tracking.reduce import HOST_DEPTH, Reducer
from tb_layerdyn.tracking import sink as sink_mod
from tb_layerdyn.tracking.sink import EventSink

_GRANULARITIES = ("layer", "parameter")


class LayerDynamics:
    """Measures how each layer of a model moves, and writes it for TensorBoard.

    The first ``log`` records the initial weights; each later one measures the weights against the
    initial ones and against those of the previous ``log``. Call it after ``optimizer.step()`` and
    before ``zero_grad()``, so that gradient norms see the gradients of that step; or let the
    optimizer log: ``attach(optimizer)`` logs at every optimizer step, gradients read in the step.

    Example::

        tracker = LayerDynamics(model, SummaryWriter("runs/seed0"), groups={"head": ["fc"]})
        for step, (x, y) in enumerate(loader):
            loss = F.cross_entropy(model(x), y)
            loss.backward(); opt.step()
            tracker.log(step)
            opt.zero_grad()

    Args:
        model: the ``nn.Module`` (DDP and ``torch.compile`` wrappers are looked through). Held
            weakly: the tracker never keeps a dropped model alive.
        writer: a ``SummaryWriter`` or a logdir path. May be ``None`` on ranks that do not write
            (every rank but 0 under torch.distributed).
        granularity: ``"layer"`` (each module's own parameters together) or ``"parameter"`` (each
            parameter tensor separately).
        rwc: ``"l1"`` (Eq. 1, ratio of L1 norms), ``"elementwise"`` (mean over elements with
            nonzero previous weight of |dw| / |w_prev|) or ``"both"``.
        groups: ``{name: [layer or module names] | "regex"}``; measured like layers, from summed
            sums. A regex selects the layers it matches anywhere in their name, ignoring case (as
            the tab's filters do); a module holding a tied parameter stands for the layer that
            measures it.
        block_groups: also group the layers of each block: each top-level child holding two or
            more layers (ResNet's ``layer1`` .. ``layer4``), and the children of a ``ModuleList``
            or ``Sequential`` at any depth that hold two or more layers each (GPT-2's
            ``transformer.h.0`` ..).
        exclude_frozen: skip layers whose parameters all have ``requires_grad=False`` (measured, with
            RWC 0, by default).
        histogram_every: write TensorBoard weight and gradient histograms (60 equal-width
            buckets, the Histograms and Distributions tabs) every this many steps; ``None`` turns
            them off.
        snapshot_device: where the initial and previous weights are kept; ``None`` beside the
            parameters, ``"cpu"`` for models too large to hold three times on the accelerator.
        fused: reduce each large fp32 parameter (4,096 elements or more, beside the parameters)
            with one ``torch.compile``d kernel that reads its weights and snapshots once, instead of
            about eleven eager passes. Compiled at the first ``log`` (seconds; cached on disk by
            inductor) and needs a C++ compiler; if compiling fails, one warning says why and the
            eager pass is used. A dict turns it on and is passed to ``torch.compile`` as inductor
            ``options``. On the CPU the native kernels, when built, are faster than this.
        name: the model's name, when several models log into one writer (a GAN's generator and
            discriminator, an EMA copy, teacher and student): each name is kept apart (its own
            tags, its own entry in ``read()`` and in the tab). Without names a second model on
            the same run directory is refused.
        images_every: draw pictures of every layer at the first ``log``, then at every step that
            is a multiple of this (``None``, the default, draws none); see ``tracking.pictures``.
        images: the picture kinds, among ``"weights"``, ``"gradients"``, ``"updates"``,
            ``"travel"`` and ``"activations"``; ``None`` for all the first four, plus activations
            when ``probe`` is given.
        probe: the input whose activations are drawn (a tensor, or a tuple of tensors), passed
            once; only its first element is drawn.
        probe_layers: names of the modules whose outputs are drawn; ``None`` for every layer's.
        sketches: write, at sketch calls (``sketch_every``), a fixed-size sketch of each layer's
            weights (on by default), from which ``read(logdir).distances(step)`` and the tab's
            population panels estimate the Euclidean distances between runs of one architecture.
            The projection is a CountSketch fixed by each layer's name and parameter shapes, never
            drawn from an RNG, so every run shares it. A sketch costs one ``index_add_`` per
            parameter (on CPU about as much as the metrics' own pass, see README), one int32 per
            scalar parameter of memory and ``4 * sum(k)`` bytes per event; on by default because
            distances cannot be recovered once training is over.
        sketch_every: sketch at the first call, then at every call whose step is a multiple of
            this (10 by default: distances and trajectories every 10th step at a tenth of the
            cost; 1 sketches every call).
        sketch_size: a layer's sketch size ``k`` (128 by default; a layer with at most ``k``
            parameters is kept exactly). A squared distance is estimated without bias, with a
            relative standard deviation of at most ``sqrt(2 / k)`` (0.125 for 128) and, with
            probability 95%, a relative error of at most ``sqrt(40 / k)``; see
            ``tb_layerdyn.format.sketches``.
        pack: calls written together as one record, at most (1: a record per call). Held calls
            are written by ``flush()``, by the writer's own ``flush()`` and ``close()``, at exit,
            and at the latest after the writer's ``flush_secs``; a crash loses at most the last
            ``pack`` calls, as many events as ``SummaryWriter``'s own queue holds (its
            ``max_queue``, 10). Read back, a packed record is the calls it holds, one per step.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, or ``writer`` is of the wrong type.
        ValueError: an option is out of range or a group matches no layer.
    """

    def __init__(
        self,
        model,
        writer=None,
        *,
        granularity="layer",
        rwc="l1",
        groups=None,
        block_groups=True,
        exclude_frozen=False,
        histogram_every=100,
        snapshot_device=None,
        fused=False,
        name=None,
        images_every=None,
        images=None,
        probe=None,
        probe_layers=None,
        sketches=True,
        sketch_size=128,
        sketch_every=10,
        pack=sink_mod.PACK,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"model must be a torch.nn.Module, got {type(model).__name__}; pass the model "
                "itself (not model.parameters() or a state dict)"
            )
        if granularity not in _GRANULARITIES:
            raise ValueError(f"granularity must be one of {_GRANULARITIES}, got {granularity!r}")
        metrics.metric_names(rwc)
        if histogram_every is not None and (
            isinstance(histogram_every, bool)
            or not isinstance(histogram_every, int)
            or histogram_every < 1
        ):
            raise ValueError(
                f"histogram_every must be a positive int or None (no histograms), got {histogram_every!r}"
            )
        if snapshot_device is not None:
            try:
                snapshot_device = torch.device(snapshot_device)
            except (RuntimeError, TypeError):
                raise ValueError(
                    f"snapshot_device must be None or a torch device such as 'cpu', got {snapshot_device!r}"
                ) from None
        if not isinstance(fused, (bool, dict)):
            raise ValueError(
                f"fused must be True, False or a dict of torch.compile options, got {fused!r}"
            )
        if isinstance(pack, bool) or not isinstance(pack, int) or pack < 1:
            raise ValueError(f"pack must be a positive int (calls per record), got {pack!r}")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ValueError(f"name must be None or a non-empty str (the model's name), got {name!r}")
        # Only rank 0 writes; on other ranks a logdir path must not even create an event file.
        self._sink = None if writer is None or distributed.rank() != 0 else EventSink(writer, pack)
        if self._sink is not None:
            # A tracker dropped with calls held (its model gone) writes them to disk then, before
            # another tracker of the run could write later steps under the same tag.
            weakref.finalize(self, self._sink.flush)
        inner = layers_mod.unwrap(model)
        self._model = weakref.ref(inner)
        self._name = name
        self._granularity = granularity
        self._rwc = rwc
        self._groups_spec = groups
        self._block_groups = block_groups
        self._exclude_frozen = exclude_frozen
        self._histogram_every = histogram_every
        found = layers_mod.find_layers(inner, granularity=granularity, exclude_frozen=exclude_frozen)
        if not found:
            complex_names = layers_mod.complex_parameters(inner)
            raise ValueError(
                "model has no parameters to measure"
                + (" (every layer is frozen and exclude_frozen=True)" if exclude_frozen else "")
                + (f" (complex parameters are not measured: {complex_names[:8]})" if complex_names else "")
            )
        layers_mod.user_groups(groups, found, tied=layers_mod.aliases(inner, found))
        if self._sink is not None and self._sink.failed is None:
            guards.claim(self._sink.log_dir, name, inner, self)
        self._order = layers_mod.ForwardOrder(inner)
        self._pictures = None
        if images_every is not None:
            self._pictures = pictures.PictureCapture(
                inner, images_every, images, probe, probe_layers, model_name=name
            )
        elif images is not None or probe is not None or probe_layers is not None:
            raise ValueError("images, probe and probe_layers need images_every=N (pictures every N steps)")
        if not isinstance(sketches, bool):
            raise ValueError(f"sketches must be True or False, got {sketches!r}")
        self._sketches = sketch.SketchCapture(sketch_size, name, sketch_every) if sketches else None
        self._reducer = Reducer(
            snapshot_device=snapshot_device,
            elementwise=rwc in ("elementwise", "both"),
            local=distributed.local,
            fused=fused,
        )
        self._all_reduce = distributed.AllReduce()
        self._layers = None
        self._fingerprint = None
        self._found = None
        self._identity = None
        self._all_previous = None
        self._signatures = {}
        self._measured = set()
        self._layout = None
        self._group_rows = []
        self._warned_nonfinite = set()
        self._warned_sharded_histograms = False
        self._computed = ComputedWeights()
        self._steps = guards.StepOrder()
        self._gradient_check = guards.GradientCheck()
        self._trainable = None
        self._warned_complex = False
        self._attachments = []
        # CUDA calls whose sums are on their way to the host: (host, event, has_previous,
        # has_grad, step, attached), oldest first.
        self._in_flight = collections.deque()
        self._batch = None
        self._pack = pack
        if self._sink is not None:
            self._sink.before_hand_over = weakref.WeakMethod(self._complete_all)

    def log(self, step):
        """Measures the model now and writes the values at ``step``.

        Args:
            step: the global step (a non-negative int) the values belong to.

        Raises:
            TypeError: ``step`` is not an integer.
            ValueError: ``step`` is negative or beyond int64, the writer is missing on the writing
                rank, a layer's parameters are lazy or on the meta device, or the tracker is
                attached to an optimizer (which logs by itself).
            RuntimeError: the model was garbage-collected.
        """
        step = guards.checked_step(step)
        if self._attachments:
            raise ValueError(
                "this tracker is attached to an optimizer and logs at each of its steps; call "
                "detach() on what attach() returned before calling log() yourself"
            )
        call = self._begin(step)
        if call is not None:
            self._finish(call, step)

    def attach(self, optimizer, *, every=1, start=0):
        """Logs at every ``every``-th step of ``optimizer``, wherever ``zero_grad()`` sits.

        Gradients are read in the optimizer's step pre-hook (after the closure, when the step is
        given one), weights in its post-hook, once per optimizer step: under gradient accumulation
        once per update, never per micro-batch. The weights before the first update are the
        initial ones. A step that ``GradScaler`` skips (inf or NaN gradients) does not run, so it
        is neither logged nor counted.

        Args:
            optimizer: the ``torch.optim.Optimizer`` (accelerate's and Lightning's wrappers are
                looked through).
            every: log steps ``s`` with ``s % every == 0``.
            start: the step of the first update after this call; steps count updates from there
                (pass the global step when resuming).

        Returns:
            An ``Attachment``: ``detach()`` removes the hooks (also as a context manager).

        Raises:
            TypeError: ``optimizer`` is not an optimizer.
            ValueError: ``every`` or ``start`` is out of range.
        """
        return Attachment(self, optimizer, every=every, start=start)

    def _begin_attached(self, step):
        """The part of an attached call that runs before the update (see ``attach``)."""
        step = guards.checked_step(step)
        return self._begin(step, attached=True)

    def _read_grads(self, call):
        found = call[0]
        self._reducer.read_grads(found)
        if self._computed:
            self._computed.read_grads()

    def _begin(self, step, attached=False):
        """Settles the layers (snapshots of new ones taken now) before anything is measured.

        Returns:
            ``(layers, sharded, writing, fresh)``, or ``None`` when this call measures nothing
            (another rank of a replicated model, or writing has failed).
        """
        if self._in_flight:
            self._complete_ready()
        if self._sink is not None and not self._sink.usable(step):
            return None
        model = self._model()
        if model is None:
            raise RuntimeError("the model of this LayerDynamics was garbage-collected; create a new one")
        found, sharded = self._current_layers(model)
        writing = distributed.rank() == 0
        if not writing and not sharded:
            return None
        if writing and self._sink is None:
            raise ValueError("writer is None on the writing rank (rank 0); pass a SummaryWriter or a logdir")
        self._steps.check(step)
        if self._computed:
            self._computed.refresh()
        fresh = self._update_layers(found, model)
        if attached:
            # Layers settled before an update: their snapshots are the weights before it.
            self._measured = {lay.name for lay in found}
            fresh = set()
        return found, sharded, writing, fresh

    def _finish(self, call, step, attached=False):
        """Measures, then writes: the snapshots move here."""
        found, sharded, writing, fresh = call
        if attached and self._computed:
            self._computed.refresh()
        if not attached and self._computed:
            self._computed.read_grads()
        batch = self._batch
        sums = self._reducer.reduce(None if batch is None else self._batch_slots[len(batch[1])])
        if sharded:
            sums = self._all_reduce(sums)
        if fresh or self._all_previous is None:
            has_previous = np.array([lay.name in self._measured and lay.name not in fresh for lay in found])
            self._measured = {lay.name for lay in found}
        else:
            # Same layers as the last call, none restarted: every one has previous weights.
            has_previous = self._all_previous
        if not writing:
            return
        # Pictures are drawn before this call's metrics go to the writer and written after them:
        # the writer thread checksums a record as it arrives, holding the GIL, which slowed the
        # drawing by half a millisecond on LeNet-5 (the held metrics are written at every tenth
        # call, the picture steps of images_every=10).
        drawn = None
        if self._pictures is not None and self._pictures.due(step):
            model = self._model()
            if model is not None:
                drawn = self._pictures.draw(model, found, self._reducer, sharded)
        has_grad = self._reducer.has_grad(found)
        if self._reducer.asynchronous:
            # CUDA: the sums travel to pinned host memory behind the device's work, and are turned
            # into values and written at a later call (or flush) once their copy is done: the call
            # never waits for the device. Computed weights read their gradients on the host now,
            # so they wait here.
            while len(self._in_flight) >= HOST_DEPTH:
                self._complete_oldest(wait=True)
            host, event = self._reducer.start_to_host(sums)
            if self._computed:
                event.synchronize()
                written = self._write_values(host.numpy(), has_previous, has_grad, step, attached)
            else:
                self._in_flight.append((host, event, has_previous, has_grad, step, attached))
                self._sink.mark_holding()
                written = self._sink.usable(step)
        else:
            host = self._reducer.to_host(sums)
            if self._deferrable(host, has_previous, has_grad, attached):
                self._defer(host, step, attached)
                written = self._sink.usable(step)
            else:
                self._write_batch()
                written = self._write_values(host, has_previous, has_grad, step, attached)
        if not written:
            return
        if self._histogram_every is not None and step % self._histogram_every == 0:
            if sharded:
                if not self._warned_sharded_histograms:
                    warnings.warn("histograms are not written for sharded (FSDP) parameters", stacklevel=3)
                    self._warned_sharded_histograms = True
            else:
                self._sink.write_histograms(found, step)
        if self._sketches is not None and self._sketches.due(step):
            self._sketches.log(self._sink, found, sharded, step)
        if drawn is not None:
            self._pictures.write(self._sink, drawn, step)

    def _write_values(self, host, has_previous, has_grad, step, attached):
        """Host side of a call: its sums into values, checked and written. Returns False when
        nothing could be written."""
        layer_sums = self._reducer.layer_sums(host)
        if self._computed:
            has_grad = self._computed.add_grads(layer_sums, has_grad)
        if not attached:
            self._gradient_check.check(
                has_grad, layer_sums[:, metrics.SUM_SQ_GRAD], self._trainable
            )
        values = self._values(layer_sums, has_previous, has_grad, step)
        return self._sink.write_metrics(self._layout, values, step)

    def _deferrable(self, host, has_previous, has_grad, attached):
        """Whether a CPU call's sums may wait to be turned into values with the next calls': a
        steady call (same layers, every one with previous weights and a gradient) that nothing
        would warn about (finite sums; some gradient not zero; ``Reducer.steady``)."""
        return (
            self._batch is not None
            and has_previous is self._all_previous
            and has_grad is self._reducer.all_true
            and self._reducer.steady(host, attached)
        )

    def _defer(self, host, step, attached):
        """Keeps a steady call's sums (a copy) for ``_write_batch``; writes them when ``pack``
        calls wait."""
        raw, steps = self._batch
        count = len(steps)
        if not self._reducer.kept:  # the native pass copied them into the slot
            np.copyto(raw[count], host)
        steps.append((step, attached))
        if count == 0:
            self._batch_since = time.monotonic()
            self._sink.mark_holding()
        if count + 1 == len(raw) or time.monotonic() - self._batch_since >= self._sink.max_wait:
            self._write_batch()

    def _write_batch(self):
        """Turns the waiting steady calls into values all at once, and writes them in order: the
        same numbers as one call at a time, for a fraction of the host work."""
        if self._batch is None or not self._batch[1]:
            return
        raw, steps = self._batch
        count = len(steps)
        self._batch = (raw, [])
        layer_sums = self._reducer.layer_sums_many(raw[:count])
        if self._group_rows:
            columns = np.concatenate(
                [layer_sums, np.add.reduceat(layer_sums[:, self._member_rows], self._member_starts, axis=1)],
                axis=1,
            )
        else:
            columns = layer_sums
        width = columns.shape[1]
        flags = np.ones(count * width, dtype=bool)
        values = metrics.compute(
            columns.reshape(count * width, metrics.NUM_SUMS), has_previous=flags, has_grad=flags, rwc=self._rwc
        )
        values = values.reshape(len(values), count, width)
        for i, (step, attached) in enumerate(steps):
            if not attached:
                self._gradient_check.saw_real()
            self._sink.write_metrics(self._layout, values[:, i], step)
        # Written now, so that no call waits longer than ``pack`` calls in all.
        self._sink.write_held()

    def _complete_oldest(self, wait):
        """Writes the oldest call whose sums are still on their way; with ``wait`` false only once
        their copy is done. Returns whether it wrote it."""
        host, event, has_previous, has_grad, step, attached = self._in_flight[0]
        if not wait and not event.query():
            return False
        if wait:
            event.synchronize()
        self._in_flight.popleft()
        self._write_values(host.numpy(), has_previous, has_grad, step, attached)
        return True

    def _complete_ready(self):
        """Writes, in order, the calls whose sums have arrived (no waiting)."""
        while self._in_flight and self._complete_oldest(wait=False):
            pass

    def _complete_all(self):
        """Writes every call not written yet: steady CPU calls waiting for a batch, and CUDA calls
        whose sums or weight sketches are on their way (waiting for their copies)."""
        self._write_batch()
        while self._in_flight:
            self._complete_oldest(wait=True)
        if self._sketches is not None:
            self._sketches.complete(self._sink)

    def flush(self):
        """Writes every call not yet written (held for a packed record, or on CUDA still on its
        way to the host) and flushes the writer's pending events to disk."""
        self._complete_all()
        if self._sink is not None:
            self._sink.flush()

    def __del__(self):
        # Calls whose sums are still on their way are written when the tracker goes (its model
        # dropped); the sink's held calls follow (``weakref.finalize`` in ``__init__``).
        try:
            sketching = getattr(self, "_sketches", None)
            if (
                getattr(self, "_in_flight", None)
                or (getattr(self, "_batch", None) or (0, 0))[1]
                or (sketching is not None and sketching.pending)
            ):
                self._complete_all()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass

    def initial_state_dict(self):
        """The weights recorded at the first ``log`` (a layer that changed restarts from then).

        Returns:
            ``{qualified parameter name: tensor}``, copies. ``interpolation_sweep`` takes this, or
            the tracker itself, as ``start``.

        Raises:
            RuntimeError: ``log`` has not been called yet, so nothing was recorded.
        """
        if self._layers is None:
            raise RuntimeError("no initial weights recorded yet; call log(step) once first")
        return self._reducer.initial_weights()

    def sweep(self, eval_fn, step, **options):
        """Sweeps from the recorded initial weights to the current ones and writes it at ``step``.

        ``options`` go to ``tb_layerdyn.sweeps.interpolation_sweep``; returns its ``SweepResult``.
        """
        from tb_layerdyn.sweeps import interpolation_sweep, log_interpolation_sweep

        result = interpolation_sweep(self._model(), eval_fn, self, **options)
        if self._sink is not None:
            log_interpolation_sweep(self._sink, result, step)
        return result

    def _current_layers(self, model):
        """The model's layers in depth order, and whether its parameters are sharded.

        Listing the layers walks every module and builds a ``Layer`` per layer; it is redone only
        when this cheap fingerprint changes: each module's name and parameter objects (a parameter
        that appears, disappears or is replaced is a new object; the old ones are kept alive by the
        cached layers, so their ids cannot be reused), the ``requires_grad`` flags when frozen
        layers are excluded, and whether the forward order is known yet. Storage moves and
        reshapes (``param.data = ...``) keep the objects; ``_update_layers`` catches them.
        """
        exclude_frozen = self._exclude_frozen
        self._order.settle()
        fingerprint = [self._order.complete]
        append = fingerprint.append
        for name, module in model.named_modules():
            params = module._parameters
            if params:
                append(name)
                for key, param in params.items():
                    append(key)
                    append(id(param))
                    if exclude_frozen and param is not None:
                        append(param.requires_grad)
        if fingerprint == self._fingerprint:
            return self._found
        found = layers_mod.find_layers(
            model, granularity=self._granularity, exclude_frozen=exclude_frozen
        )
        why = layers_mod.unmeasurable(found)
        if why is not None:
            raise ValueError(why)
        if not self._warned_complex:
            complex_names = layers_mod.complex_parameters(model)
            if complex_names:
                self._warned_complex = True
                warnings.warn(
                    f"complex parameters {complex_names[:8]}{' ...' if len(complex_names) > 8 else ''} "
                    "are not measured: every metric here is defined for real weights (warned once)",
                    stacklevel=guards.user_stacklevel(),
                )
        found = self._computed.measured(model, found)
        sharded = distributed.is_sharded(p for layer in found for _, p in layer.params)
        if self._order.complete:
            found = self._order.sort(found)
        self._fingerprint, self._found = fingerprint, (found, sharded)
        return self._found

    def _update_layers(self, found, model):
        """Rebuilds snapshots, buffers and layout when the layers or their order changed.

        Returns:
            Names of layers whose snapshots start over at this call.
        """
        order = "forward" if self._order.complete else "registration"
        # The same parameter objects in the same layers, order and storage cannot have changed
        # shape, strides, dtype or device (each of those replaces the storage): skip the full
        # signatures, which cost more than the rest of this check on every call.
        if found is self._layers and self._layout["order"] == order and not self._reducer.stale():
            return set()
        identity = tuple((lay.name, *(id(p) for _, p in lay.params)) for lay in found)
        if (
            identity == self._identity
            and self._layout["order"] == order
            and not self._reducer.stale()
        ):
            return set()
        signatures = {lay.name: lay.signature for lay in found}
        same_order = self._layers is not None and [lay.name for lay in self._layers] == [lay.name for lay in found]
        if (
            same_order
            and signatures == self._signatures
            and self._layout["order"] == order
            and not self._reducer.stale()
        ):
            self._identity = identity
            return set()
        fresh = {name for name, sig in signatures.items() if self._signatures.get(name) != sig}
        if self._layers is not None:
            gone = sorted(set(self._signatures) - set(signatures))
            changed = sorted(fresh)
            if changed or gone:
                warnings.warn(
                    f"layers changed between calls (new or reshaped: {changed}; gone: {gone}); their "
                    "measurements restart from the current weights under a new layout",
                    stacklevel=3,
                )
        # Calls still on their way are written under the layout they were measured with.
        self._complete_all()
        self._reducer.prepare(found, [lay.name in fresh for lay in found])
        self._layers = found
        self._identity = identity
        self._all_previous = np.ones(len(found), dtype=bool)
        self._signatures = signatures
        self._trainable = guards.trainable(found)
        # Steady CPU calls wait here to be turned into values together (``_write_batch``): only
        # where every layer is trainable (a frozen layer's missing gradient is no steady state)
        # and with computed weights absent (their gradients are read on the host per call).
        self._batch = None
        if self._pack > 1 and self._trainable.all() and not self._computed and not self._reducer.asynchronous:
            self._batch = (np.zeros((self._pack, self._reducer.sums.numel()), dtype=np.float32), [])
            # Torch views of the batch's rows, made once: the pass may copy a call's sums into its
            # row itself (``Reducer.reduce``'s ``keep``).
            self._batch_slots = list(torch.from_numpy(self._batch[0]))
        self._build_layout(found, model)
        return fresh

    def _build_layout(self, found, model):
        groups = layers_mod.user_groups(
            self._groups_spec, found, strict=False, tied=layers_mod.aliases(model, found)
        )
        if self._block_groups:
            taken = {g["name"] for g in groups}
            groups = [
                g for g in layers_mod.block_groups(model, found) if g["name"] not in taken
            ] + groups
        self._layout = layer_metrics.layout(
            metrics=metrics.metric_names(self._rwc),
            layers=[lay.name for lay in found],
            param_counts=[lay.numel for lay in found],
            order="forward" if self._order.complete else "registration",
            granularity=self._granularity,
            rwc=self._rwc,
            groups=groups,
            model=self._name,
            descriptions=[lay.description for lay in found],
        )
        index = {lay.name: i for i, lay in enumerate(found)}
        self._group_rows = [[index[m] for m in g["members"]] for g in groups]
        # Host buffers of ``_values``, reused by every call until the layout changes. The members
        # of every group, one after the other, gathered into one array and added up per group by
        # one ``reduceat``: the same row-by-row sums as adding each group's rows on its own.
        num_layers, num_groups = len(found), len(groups)
        self._member_rows = np.array([r for rows in self._group_rows for r in rows], dtype=np.intp)
        self._member_starts = np.cumsum([0] + [len(rows) for rows in self._group_rows[:-1]], dtype=np.intp)
        self._gathered = np.zeros((len(self._member_rows), metrics.NUM_SUMS))
        self._column_sums = np.zeros((num_layers + num_groups, metrics.NUM_SUMS))
        self._all_true_columns = np.ones(num_layers + num_groups, dtype=bool)

    def _group_flags(self, layer_flags, combine):
        """Per column: the layer's flag, then each group's ``combine`` (and/or) of its members'."""
        num_layers = len(layer_flags)
        flags = np.empty(num_layers + len(self._group_rows), dtype=bool)
        flags[:num_layers] = layer_flags
        if len(self._group_rows):
            combine.reduceat(layer_flags[self._member_rows], self._member_starts, out=flags[num_layers:])
        return flags

    def _values(self, layer_sums, has_previous, has_grad, step):
        finite = np.isfinite(metrics.finite_sum(layer_sums))
        if (
            finite
            and not self._group_rows
            and self._rwc == "l1"
            and has_previous is self._all_previous
            and has_grad is self._reducer.all_true
        ):
            # The steady state of a training loop (no groups): no copy, no flags, no masks.
            values = metrics.compute_defined(layer_sums)
            if values is not None:
                return values
        if not finite and not np.isfinite(layer_sums[:, metrics.WEIGHT_SUMS].sum()):
            bad = metrics.nonfinite_columns(layer_sums)
            newly = [lay.name for lay, b in zip(self._layers, bad) if b and lay.name not in self._warned_nonfinite]
            if newly:
                self._warned_nonfinite.update(newly)
                warnings.warn(
                    f"layers {newly} hold NaN or Inf weights at step {step}; their values are NaN "
                    "while that lasts (warned once per layer)",
                    stacklevel=guards.user_stacklevel(),
                )
        sums = self._column_sums
        num_layers = len(layer_sums)
        sums[:num_layers] = layer_sums
        if len(self._group_rows):
            np.take(layer_sums, self._member_rows, axis=0, out=self._gathered)
            np.add.reduceat(self._gathered, self._member_starts, axis=0, out=sums[num_layers:])
        # All-true flags (the steady state) are the same arrays on every call: so are their columns.
        if has_previous is self._all_previous:
            previous = self._all_true_columns
        else:
            previous = self._group_flags(has_previous, np.logical_and)
        if has_grad is self._reducer.all_true:
            grads = self._all_true_columns
        else:
            grads = self._group_flags(has_grad, np.logical_or)
        return metrics.compute(sums, has_previous=previous, has_grad=grads, rwc=self._rwc)


# model (unwrapped, weakly held) -> {writer key: (options, tracker)}
_registry = weakref.WeakKeyDictionary()

# The last call's model, writer, options and tracker (weak references, like the registry's): a
# training loop passes the same ones at every step, and comparing them is cheaper than the
# registry's lookup (unwrapping the model, a weak-keyed dict), which took about 40 us of LeNet-5's
# call on the cold caches a training step leaves. Writers given as paths always take the lookup
# (the same string may name another directory after a chdir).
_last_call = None


def _writer_key(writer):
    if isinstance(writer, (str, os.PathLike)):
        return ("path", os.path.abspath(os.fspath(writer)))
    return writer


def _same_options(first, later):
    """Options equal by value, tensors (a probe) by identity: comparing them by value is ambiguous."""
    if first.keys() != later.keys():
        return False
    return all(
        a is b if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor) else a == b
        for a, b in ((first[k], later[k]) for k in first)
    )


def log_layer_dynamics(writer, model, step, **options):
    """Logs per-layer weight dynamics of ``model`` at ``step``; call it in the training loop.

    Keeps one ``LayerDynamics`` per (writer, model) pair, created on the first call with
    ``options`` (see ``LayerDynamics`` for them, ``name=`` included) and dropped with the model.
    Call it after ``optimizer.step()`` and before ``zero_grad()``.

    Example::

        log_layer_dynamics(writer, model, step)            # writer: SummaryWriter or "runs/x"
        log_layer_dynamics(writer, model, step, rwc="both", histogram_every=None)

    Raises:
        TypeError: ``model`` is not an ``nn.Module`` or ``writer`` is of the wrong type.
        ValueError: ``options`` differ from those of the first call for this pair, or as
            ``LayerDynamics.log`` raises.
    """
    global _last_call
    last = _last_call
    if last is not None and last[0]() is model and last[1]() is writer and _same_options(last[2], options):
        tracker = last[3]()
        if tracker is not None:
            tracker.log(step)
            return
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module, got {type(model).__name__}; pass the model itself"
        )
    inner = layers_mod.unwrap(model)
    per_model = _registry.setdefault(inner, {})
    key = _writer_key(writer)
    entry = per_model.get(key)
    if entry is None:
        entry = (options, LayerDynamics(model, writer, **options))
        per_model[key] = entry
    elif not _same_options(entry[0], options):
        raise ValueError(
            f"options {options} differ from the first call's {entry[0]} for this writer and model; "
            "create a LayerDynamics(model, writer, ...) to log with other options"
        )
    _last_call = None
    if not isinstance(writer, (str, os.PathLike)):
        try:
            _last_call = (weakref.ref(model), weakref.ref(writer), entry[0], weakref.ref(entry[1]))
        except TypeError:  # a writer that takes no weak reference: the lookup every time
            pass
    entry[1].log(step)
