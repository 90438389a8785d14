"""Pictures of each layer at picture steps: weights, gradients, updates, travel and activations.

``PictureCapture`` holds what pictures need between calls and turns tensors into the pictures
payload (``tb_layerdyn.format.pictures``); the tracker calls it from ``log`` on picture steps only,
so other steps pay one integer test.

What each kind draws, per layer (its ``weight`` parameter, or its largest one when it has none):

``weights``      ``w_t``, PiYG.
``gradients``    the gradient at the call (after ``backward``, before ``zero_grad``), PiYG; a layer
                 without one has no picture at that step.
``updates``      ``w_t - w_prev``: the real change since the previous picture call, PiYG (the
                 videos of Doran's "Inside Neural Network Training" drew the gradient times Adam's
                 step factor instead). Needs one snapshot of each drawn parameter, refreshed at
                 picture calls only: memory O(parameters), no work on other steps. No picture at
                 the first call, or after a parameter changed shape.
``travel``       ``|w_t - w_0|``, against the tracker's initial weights, drawn as the opacity of
                 ``w_t``'s colour over white (a second plane of the picture).
``activations``  the outputs of chosen modules for a probe input (``probe``), grayscale.

Layouts and the pixel cap are in ``picture_layouts``; pooling runs where the tensor lives, then
the parameter pictures of every layer cross to the host at once, in one buffer, are quantized to
8-bit gray levels together and PNG-encoded layer by layer.
"""

import warnings
from typing import Dict, List

import torch
from torch import nn
from torch.nn import functional as F

from tb_layerdyn.format import pictures as payload
from tb_layerdyn.tracking import picture_layouts, probe as probe_mod

PICTURE_KINDS = payload.PICTURES
# Every kind but activations, which needs a probe: with one, activations are drawn too.
DEFAULT_KINDS = ("weights", "gradients", "updates", "travel")
BITS = 8
_SYMBOLS = {"weights": "|w|", "gradients": "|g|", "updates": "|Δw|", "travel": "travel"}


def drawn_parameter(layer):
    """``(qualified name, parameter)`` of the tensor a layer's picture shows: its ``weight`` unless
    that is empty, else its largest parameter (the first of equal ones)."""
    for name, param in layer.params:
        if (name == "weight" or name.endswith(".weight")) and param.numel():
            return name, param
    return max(layer.params, key=lambda item: item[1].numel())


def _pool(tensors, kernel):
    """Pools ``(..., H, W)`` tensors in ``kernel`` blocks over their last two dimensions, each block
    keeping the element of largest magnitude of the first tensor (NaN counts as largest), and the
    others the element at the same place. Blocks at the right and bottom edges may be partial.
    Where several elements have the largest magnitude, a single tensor keeps the positive one
    (``_strongest``), and several tensors the first in the block's row-major order."""
    if kernel == (1, 1):
        return tensors
    if len(tensors) == 1:
        return [_strongest(tensors[0], kernel)]
    _, index = F.max_pool2d(tensors[0].abs(), kernel, kernel, ceil_mode=True, return_indices=True)
    flat = index.flatten(-2)
    return [t.flatten(-2).gather(-1, flat).view(index.shape) for t in tensors]


def _strongest(tensor, kernel):
    """``_pool`` of a single tensor: each block's element of largest magnitude, with its sign (the
    positive one where +m and -m tie), from the block's largest and smallest elements. Without
    indices, one copy lays each block's elements out along a new first dimension, whose max and
    min are then elementwise; max_pool2d with indices took three times as long (fc1 of LeNet-5,
    four kinds). Zeros pad partial blocks: they change neither a block's largest magnitude nor
    its sign."""
    *leading, height, width = tensor.shape
    tensor = tensor.reshape(-1, height, width)
    count = tensor.shape[0]
    block_h, block_w = kernel
    pad_h, pad_w = -height % block_h, -width % block_w
    if pad_h or pad_w:
        tensor = F.pad(tensor, (0, pad_w, 0, pad_h))
    rows, columns = (height + pad_h) // block_h, (width + pad_w) // block_w
    blocks = (
        tensor.reshape(count, rows, block_h, columns, block_w)
        .permute(2, 4, 0, 1, 3)
        .reshape(block_h * block_w, count, rows, columns)
    )
    # NaN where a block holds one: it stays visible (aminmax took 16 times as long as the two).
    high, low = blocks.amax(0), blocks.amin(0)
    return torch.where(high >= -low, high, low).reshape(*leading, rows, columns)


def mosaic(tensors, plan: picture_layouts.Plan) -> List[torch.Tensor]:
    """The stored pictures (2-D, gaps left out) of tensors drawn by one ``plan``.

    Args:
        tensors: tensors of ``plan.shape``; where a block is pooled, the first one's element of
            largest magnitude is kept, and the others keep the element at the same place.
        plan: from ``picture_layouts``.

    Returns:
        One float32 tensor of ``plan.picture_shape`` per input, on the inputs' device; the empty
        cells of a grid are NaN.
    """
    tensors = [t.detach().float() for t in tensors]
    tile_h, tile_w = plan.tile
    pooled_h, pooled_w = plan.pooled_tile
    if plan.channels:
        maps = [t.reshape(plan.shape[0], tile_h * tile_w) for t in tensors]
        if plan.channel_group > 1:
            # Channels pooled in groups: a 1 x group block over (position, channel).
            maps = _pool([m.t()[None] for m in maps], (1, plan.channel_group))
            maps = [m[0].t() for m in maps]
        cells = plan.cells
        maps = _pool([m.reshape(cells, tile_h, tile_w) for m in maps], plan.tile_block)
        rows, columns = plan.pooled_grid
        if rows * columns > cells:
            empty = rows * columns - cells
            maps = [torch.cat([m, m.new_full((empty, pooled_h, pooled_w), float("nan"))]) for m in maps]
        return [
            m.reshape(rows, columns, pooled_h, pooled_w)
            .permute(0, 2, 1, 3)
            .reshape(rows * pooled_h, columns * pooled_w)
            for m in maps
        ]
    return [m[0] for m in mosaic_batch([t[None] for t in tensors], plan)]


def mosaic_batch(tensors, plan: picture_layouts.Plan) -> List[torch.Tensor]:
    """``mosaic`` of a weight ``plan`` for a batch: tensors of shape ``(B, *plan.shape)``, each of
    the B pictures pooled by its own elements of the first tensor. One set of ops draws several
    kinds of one layer at once (weights, gradients, updates and travel share a geometry).

    Returns:
        One float32 tensor of shape ``(B, *plan.picture_shape)`` per input.
    """
    if plan.channels:
        raise ValueError("mosaic_batch draws weight plans; activations go through mosaic")
    batch = tensors[0].shape[0]
    tensors = [t.detach().float() for t in tensors]
    tile_h, tile_w = plan.tile
    pooled_h, pooled_w = plan.pooled_tile
    rows, columns = plan.grid
    # Kernels (or the one matrix tile) pooled inside, then (out, in) pairs pooled across, with the
    # kernel positions as channels.
    tiles = _pool([t.reshape(batch * rows * columns, tile_h, tile_w) for t in tensors], plan.tile_block)
    if plan.grid_block > 1:
        k = plan.grid_block
        across = _pool(
            [t.reshape(batch, rows, columns, pooled_h * pooled_w).permute(0, 3, 1, 2) for t in tiles], (k, k)
        )
        rows, columns = plan.pooled_grid
        tiles = [t.permute(0, 2, 3, 1) for t in across]
    return [
        t.reshape(batch, rows, columns, pooled_h, pooled_w)
        .permute(0, 1, 3, 2, 4)
        .reshape(batch, rows * pooled_h, columns * pooled_w)
        for t in tiles
    ]


class PictureCapture:
    """The picture options of one tracker, and the state pictures keep between calls.

    Args:
        model: the (unwrapped) model, to check module names against.
        every: draw at the first call, then at every call whose step is a multiple of this.
        kinds: picture kinds among ``PICTURE_KINDS``; ``None`` for ``DEFAULT_KINDS``, plus
            ``"activations"`` when a probe is given.
        probe: the input whose activations are drawn: a tensor, or a tuple of tensors passed as
            positional arguments, batch dimension first (only its first element is drawn).
        probe_layers: qualified names of the modules whose outputs are drawn; ``None`` for every
            layer's module.
        model_name: the tracker's name, when several models share one writer.

    Raises:
        ValueError: an option is out of range, ``activations`` are asked without a probe, or a
            probe layer is not a module of the model.
        TypeError: ``probe`` is not a tensor or a tuple of tensors.
    """

    def __init__(self, model: nn.Module, every, kinds=None, probe=None, probe_layers=None, model_name=None):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"images_every must be a positive int or None (no pictures), got {every!r}")
        if probe is not None:
            parts = probe if isinstance(probe, tuple) else (probe,)
            if not parts or not all(isinstance(p, torch.Tensor) for p in parts):
                raise TypeError(
                    f"probe must be a tensor or a tuple of tensors (the model's inputs), got {type(probe).__name__}"
                )
            probe = tuple(p.detach() for p in parts) if isinstance(probe, tuple) else probe.detach()
        if kinds is None:
            kinds = DEFAULT_KINDS + (("activations",) if probe is not None else ())
        if isinstance(kinds, str):
            kinds = (kinds,)
        kinds = tuple(kinds)
        unknown = [k for k in kinds if k not in PICTURE_KINDS]
        if unknown or not kinds:
            raise ValueError(f"images must name some of {list(PICTURE_KINDS)}, got {list(kinds)}")
        if "activations" in kinds and probe is None:
            raise ValueError("images includes 'activations' but no probe was given; pass probe=<an input batch>")
        if probe_layers is not None:
            if isinstance(probe_layers, str):
                probe_layers = [probe_layers]
            modules = dict(model.named_modules())
            missing = [n for n in probe_layers if n not in modules]
            if missing:
                raise ValueError(
                    f"probe_layers names {missing}, which are not modules of the model; modules are "
                    f"{[n for n in modules if n][:8]}"
                )
            probe_layers = list(dict.fromkeys(probe_layers))
        self.every = every
        self.kinds = tuple(k for k in PICTURE_KINDS if k in kinds)
        self._probe = probe
        self._probe_layers = probe_layers
        self._model_name = model_name
        self._called = False
        self._previous: Dict[str, torch.Tensor] = {}
        self._plans = {}
        self._layouts = {}
        self._warned_sharded = False

    def due(self, step: int) -> bool:
        """Whether ``step`` gets pictures: the first call's, then every multiple of ``every``."""
        return not self._called or step % self.every == 0

    def log(self, sink, model, layers, reducer, sharded: bool, step: int) -> None:
        """Draws every kind at ``step`` and writes them in one event, one value per kind
        (``draw`` then ``write``; the arguments are theirs)."""
        self.write(sink, self.draw(model, layers, reducer, sharded), step)

    def draw(self, model, layers, reducer, sharded: bool):
        """Draws every kind of this call.

        Args:
            model: the unwrapped model.
            layers: its layers in depth order (``tracking.layers.Layer``).
            reducer: the tracker's ``Reducer``, for the initial weights.
            sharded: parameters are sharded (FSDP): pictures are skipped, with one warning.

        Returns:
            What ``write`` writes: per kind with a picture, ``(kind, names, encoded planes)``.
        """
        self._called = True
        if sharded:
            if not self._warned_sharded:
                warnings.warn("pictures are not drawn for sharded (FSDP) parameters", stacklevel=3)
                self._warned_sharded = True
            return []
        # An empty tensor has nothing to draw.
        drawn = [(layer.name, *drawn_parameter(layer)) for layer in layers]
        drawn = [entry for entry in drawn if entry[2].numel()]
        initial = reducer.initial_snapshots() if "travel" in self.kinds else {}
        found = []
        with torch.no_grad():
            drawn_kinds = [k for k in self.kinds if k != "activations"]
            by_kind = self._parameters(drawn_kinds, drawn, initial) if drawn_kinds else {}
            for kind in self.kinds:
                if kind == "activations":
                    names, planes = self._activations(model, layers)
                else:
                    names, planes = by_kind[kind]
                if any(p is not None for p in planes):
                    found.append((kind, names, planes))
            if "updates" in self.kinds:
                self._snapshot(drawn)
        return found

    def write(self, sink, drawn, step: int) -> None:
        """Writes what ``draw`` drew at ``step``, in one event: one value per kind.

        Args:
            sink: the tracker's ``EventSink``.
            drawn: ``draw``'s result.
            step: the step.
        """
        # One event for the whole call, written once every kind is drawn. TensorBoard's writer
        # thread checksums each record as it arrives, holding the GIL: a record handed over
        # mid-call slowed the rest of the call by as much as its checksum (a LeNet-5 call of the
        # default kinds took 6.3 ms inside a training loop with each kind written as drawn, 4.0
        # ms written last), and each record costs a checksum pass and a file append of its own.
        if not drawn:
            return
        call = None
        for kind, names, planes in drawn:
            content, tag = self._layout(kind, names)
            proto = payload.summary(planes, content, with_metadata=sink.needs_metadata(tag), tag_name=tag)
            if call is None:
                call = proto
            else:
                call.value.extend(proto.value)
        sink.write_summary(call, step)

    def _sources(self, kind, param_name, weight, initial):
        """The tensors ``weights``, ``updates`` or ``travel`` draws of a parameter (the first one
        keys the pooling), or ``None`` when it has no picture at this call."""
        if kind == "weights":
            return [weight]
        if kind == "updates":
            previous = self._previous.get(param_name)
            if previous is None or previous.shape != weight.shape:
                return None
            return [weight.float() - previous.to(weight.device).float()]
        start = initial.get(param_name)
        if start is None or start.shape != weight.shape:
            return None
        return [(weight.float() - start.to(weight.device).float()).abs(), weight]

    def _parameters(self, kinds, drawn, initial):
        """``{kind: (names, pictures)}`` for the parameter kinds, each picture a list of encoded
        planes or ``None``: per layer, every kind is pooled in one batch (they share the layer's
        geometry), each picture by its own first tensor, then quantized and encoded in one."""
        found = {kind: ([], []) for kind in kinds}
        # Every layer's planes are pooled where the tensors live, then cross to the host in one
        # buffer and are quantized and encoded together; each layer then takes its planes back.
        pooled, groups, maps, layers = [], [], [], []
        for layer_name, param_name, param in drawn:
            weight = param.detach()
            sources = {}
            for kind in kinds:
                if kind == "gradients":
                    grad = param.grad
                    sources[kind] = None if grad is None or grad.is_sparse else [grad]
                else:
                    sources[kind] = self._sources(kind, param_name, weight, initial)
            present = [kind for kind in kinds if sources[kind] is not None]
            single, reuse = [], False
            if present:
                plan = self._plan(present[0], param_name, weight.shape)
                height, width = plan.picture_shape
                # Kinds of one plane are pooled together by their own values; travel alone, since
                # its second plane (the weight) is taken where the travel is largest.
                single = [kind for kind in present if len(sources[kind]) == 1]
                count = 0
                if single:
                    keys = torch.stack([sources[kind][0].float() for kind in single])
                    pooled.extend(mosaic_batch([keys], plan))
                    maps.extend(payload.PLANES[kind][0][1] for kind in single)
                    count += len(single)
                # Unpooled, travel's weight plane is the weights picture itself: drawn once.
                reuse = "travel" in present and "weights" in single and not plan.reduced
                if reuse:
                    pooled.extend(mosaic_batch([sources["travel"][0][None]], plan))
                    maps.append(payload.PLANES["travel"][0][1])
                    count += 1
                elif "travel" in present:
                    pooled.extend(mosaic_batch([s[None] for s in sources["travel"]], plan))
                    maps.extend(map_name for _, map_name in payload.PLANES["travel"])
                    count += 2
                groups.append((count, height, width))
            layers.append((layer_name, param_name, tuple(weight.shape), present, single, reuse))
        encoded_all = iter(())
        if pooled:
            # Only activations compress well enough to pay for it (png.py says what was measured).
            host = torch.cat([p.reshape(-1) for p in pooled]).cpu().numpy()
            encoded_all = iter(payload.encode_groups(host, groups, maps, BITS, compress=False))
        for layer_name, param_name, shape, present, single, reuse in layers:
            encoded = {}
            for kind in single:
                encoded[kind] = [next(encoded_all)]
            if reuse:
                encoded["travel"] = [next(encoded_all), encoded["weights"][0]]
            elif "travel" in present:
                encoded["travel"] = [next(encoded_all), next(encoded_all)]
            for kind in kinds:
                names, pictures = found[kind]
                names.append((layer_name, param_name, shape))
                pictures.append(encoded.get(kind))
        return found

    def _activations(self, model, layers):
        wanted = self._probe_layers
        if wanted is None:
            wanted = list(dict.fromkeys(layer.module for layer in layers))
        captured = probe_mod.capture(model, self._probe, wanted)
        names, pictures = [], []
        for module_name, tensor in captured:
            if not tensor.numel():
                continue
            plan = self._plan("activations", module_name, tensor.shape)
            names.append((module_name, module_name, tuple(tensor.shape)))
            (values,) = mosaic([tensor], plan)
            pictures.append([payload.encode(values.cpu().numpy(), "gray", BITS)])
        return names, pictures

    def _plan(self, kind, name, shape):
        key = (kind, name, tuple(shape))
        plan = self._plans.get(key)
        if plan is None:
            if kind == "activations":
                plan = picture_layouts.activation_plan(f"{name} output", tuple(shape))
            else:
                plan = picture_layouts.weight_plan(name, tuple(shape), symbol=_SYMBOLS[kind])
            self._plans[key] = plan
        return plan

    def _layout(self, kind, names):
        """The content dict and tag of ``kind`` for these (layer, tensor, shape) names; the last
        one of each kind is kept, so it is built again only when a shape or a layer changes."""
        key = tuple(names)
        last = self._layouts.get(kind)
        if last is not None and last[0] == key:
            return last[1]
        plans = [self._plan(kind, tensor, shape) for _, tensor, shape in names]
        content = payload.layout(
            picture=kind,
            layers=[layer for layer, _, _ in names],
            shapes=[p.picture_shape for p in plans],
            tiles=[p.pooled_tile for p in plans],
            cells=[p.cells for p in plans],
            descriptions=[p.description for p in plans],
            model=self._model_name,
        )
        found = (content, payload.tag(content))
        self._layouts[kind] = (key, found)
        return found

    def _snapshot(self, drawn):
        for _, param_name, param in drawn:
            weight = param.detach()
            previous = self._previous.get(param_name)
            if previous is None or previous.shape != weight.shape or previous.dtype != weight.dtype:
                self._previous[param_name] = weight.clone()
            else:
                previous.copy_(weight)
