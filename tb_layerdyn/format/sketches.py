"""The weight sketches payload: at sketch calls, a small fixed-size sketch of each layer.

A sketch estimates Euclidean distances between the weights of runs of one architecture (the
population panels: a run x run distance matrix, trajectories) without keeping the weights.

Sketch
------
A layer of ``n`` scalar parameters (its parameters flattened in registration order, one after the
other) gets a sketch of ``k = min(n, size)`` float32 values (``size`` is the tracker's
``sketch_size``, ``DEFAULT_SIZE`` by default). A layer with ``n <= size`` is kept exactly: its
sketch is its weights. Otherwise the sketch is a CountSketch: element ``i`` is added, with sign
``s(i)``, into bucket ``b(i)`` of ``k``::

    sketch[j] = sum over i with b(i) = j of s(i) * w[i]

``b`` and ``s`` come from ``hash_values(seed, i)`` (splitmix64, ``buckets_and_signs``): the high
32 bits times ``k``, shifted right by 32, give ``b(i)``, the lowest bit the sign (1: minus). The
seed of a layer is ``layer_seed(name, shapes)``: a fixed constant, the layer's name and its
parameters' names and shapes, hashed. So every run of one architecture uses the same projection,
whatever its global RNG (nothing here draws random numbers), and the sketch is linear: the sketch
of ``w_a - w_b`` is ``sketch_a - sketch_b``.

Error bound
-----------
For a fixed vector ``x`` (a difference of two runs' weights) and the projection drawn at random
(the seed's hash behaves as random; the weights do not depend on it), ``D^2 = |Sx|^2`` is an
unbiased estimate of ``d^2 = |x|^2``::

    |Sx|^2 = sum_i x_i^2 + 2 sum_{i<j} s(i) s(j) x_i x_j [b(i) = b(j)]

The cross terms have mean 0 (independent signs) and are uncorrelated, each of variance
``x_i^2 x_j^2 P(b(i) = b(j)) = x_i^2 x_j^2 / k``; so ``Var D^2 = (2 / k) (|x|^4 - sum_i x_i^4)``,
at most ``2 |x|^4 / k``: the relative error of a squared distance has a standard deviation of at
most ``rms = sqrt(2 / k)``, and by Chebyshev ``|D^2 - d^2| <= sqrt(2 / (k delta)) d^2`` with
probability at least ``1 - delta``. A distance follows: ``D^2 / d^2`` within ``1 +- e`` puts
``D / d`` within ``1 +- e`` too. The whole model's ``D^2`` is the sum of its layers' (independent
seeds): its variance ``sum_l 2 d_l^4 / k_l <= (2 / min k_l) (sum_l d_l^2)^2``, the same bound with
the smallest sketched ``k`` (exact layers add no error). ``error_figures`` gives both numbers.

Tag and layout
--------------
One event per sketch call (the first logging call, then every multiple of the tracker's
``sketch_every`` steps), under ``layer_dynamics/sketches/<digest>`` (``envelope.digest`` of the
layout). Layout (``plugin_data.content``):

``layers``        layer names, in the tracker's depth order
``param_counts``  scalar parameters ``n`` of each layer
``dims``          each layer's sketch size ``k`` (``k = n``: kept exactly)
``seeds``         each layer's ``layer_seed``, 16 hex digits
``scheme``        ``SCHEME``: the hash and bucket rule above (another scheme is another projection)
``model``         the tracker's name when several models share a writer, else absent

Tensor: float32 of shape ``(sum(dims),)``, the layers' sketches one after the other in ``layers``
order, at the event's step. NaN or infinite values mean the weights were not finite.

Two layouts are of one **architecture** (``architecture``) when they hold the same layers (in any
order) with the same ``param_counts``, ``dims`` and ``seeds``, under the same ``scheme``: their
sketches are comparable.

Readers keep these payloads as columns (``STORAGE``): one row of ``sum(dims)`` values per step,
``metrics`` ``("sketch",)``. Nothing here imports torch.
"""

import dataclasses
import hashlib
import math
from typing import Dict, Optional, Tuple

import numpy as np
from tensorboard.compat.proto import summary_pb2, types_pb2

from tb_layerdyn.format import checks, envelope, tensors

KIND = "sketches"
VERSION = 1
TAG_PREFIX = envelope.TAG_PREFIX + "sketches/"
# Readers keep these payloads as columns of values (``reading.columns``): one row per call.
STORAGE = "columns"

SCHEME = "countsketch-splitmix64-v1"
DEFAULT_SIZE = 128
MAX_SIZE = 4096
# Part of every layer's seed: changing it changes every projection.
SEED_CONSTANT = "tb_layerdyn.sketch.v1"
# The probability ``error_figures`` bounds the error for (answers carry the 95% figure).
DELTA = 0.05

_MASK = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15


@dataclasses.dataclass(frozen=True)
class Layout:
    """A checked layout, as readers use it (see the module docstring for each field)."""

    layers: Tuple[str, ...]
    param_counts: Tuple[int, ...]
    dims: Tuple[int, ...]
    seeds: Tuple[str, ...]
    scheme: str
    model: Optional[str]
    version: int

    # What the columns store needs: one "metric", one row of every layer's values per call.
    metrics: Tuple[str, ...] = ("sketch",)

    @property
    def shape(self) -> Tuple[int, int]:
        return (1, sum(self.dims))

    @property
    def offsets(self) -> Dict[str, Tuple[int, int]]:
        """Layer name -> ``(start, stop)`` of its sketch in a row."""
        found, start = {}, 0
        for name, dim in zip(self.layers, self.dims):
            found[name] = (start, start + dim)
            start += dim
        return found

    @property
    def exact(self) -> Tuple[bool, ...]:
        """Per layer, whether its sketch is its weights (``k = n``)."""
        return tuple(d == n for d, n in zip(self.dims, self.param_counts))

    @property
    def architecture(self) -> str:
        return architecture(self)


def sketch_dim(count: int, size: int) -> int:
    """The sketch size ``k`` of a layer of ``count`` parameters: ``min(count, size)``."""
    return min(int(count), int(size))


def layer_seed(name: str, shapes) -> str:
    """A layer's projection seed, 16 hex digits, from ``SEED_CONSTANT``, its name and its
    parameters' ``(qualified name, shape)`` pairs in registration order."""
    parts = [SEED_CONSTANT, name] + [f"{p}:{'x'.join(str(int(d)) for d in shape)}" for p, shape in shapes]
    return hashlib.sha1("|".join(parts).encode("utf-8")).hexdigest()[:16]


def hash_values(seed: str, start: int, count: int) -> np.ndarray:
    """splitmix64 of elements ``start .. start + count - 1`` of a layer with ``seed``: uint64."""
    with np.errstate(over="ignore"):
        z = np.arange(start + 1, start + count + 1, dtype=np.uint64) * np.uint64(_GAMMA)
        z += np.uint64(int(seed, 16) & _MASK)
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def buckets_and_signs(seed: str, start: int, count: int, dim: int) -> Tuple[np.ndarray, np.ndarray]:
    """Bucket (int64 in ``[0, dim)``) and sign (bool, True for minus) of elements ``start ..
    start + count - 1`` of a sketched layer."""
    z = hash_values(seed, start, count)
    with np.errstate(over="ignore"):
        buckets = ((z >> np.uint64(32)) * np.uint64(dim)) >> np.uint64(32)
    return buckets.astype(np.int64), (z & np.uint64(1)).astype(bool)


def sketch_reference(values, seed: str, dim: int) -> np.ndarray:
    """The sketch of a layer's flattened weights, in float64 (slow and plain: for tests and for
    a reader that wants to sketch saved weights)."""
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    if dim == flat.size:
        return flat.copy()
    buckets, minus = buckets_and_signs(seed, 0, flat.size, dim)
    out = np.zeros(dim)
    np.add.at(out, buckets, np.where(minus, -flat, flat))
    return out


def error_figures(dims, exact) -> Tuple[float, float]:
    """``(rms, bound)`` of the relative error of a squared distance estimated from layers with
    sketch sizes ``dims`` (``exact`` per layer): ``sqrt(2 / k)`` and ``sqrt(2 / (k DELTA))`` for
    the smallest sketched ``k``; ``(0, 0)`` when every layer is exact."""
    sketched = [int(d) for d, e in zip(dims, exact) if not e]
    if not sketched:
        return 0.0, 0.0
    k = min(sketched)
    return math.sqrt(2.0 / k), math.sqrt(2.0 / (k * DELTA))


def layout(*, layers, param_counts, dims, seeds, model=None):
    """The content dict of a sketches tag, for the writer.

    Raises:
        ValueError: an argument breaks the layout's rules; the message names it.
    """
    content = {
        "layers": [str(n) for n in layers],
        "param_counts": [int(n) for n in param_counts],
        "dims": [int(d) for d in dims],
        "seeds": [str(s) for s in seeds],
        "scheme": SCHEME,
    }
    if model is not None:
        content["model"] = str(model)
    return checks.built(content, parse_layout, KIND, VERSION)


def parse_layout(content) -> Layout:
    """The ``Layout`` of a content dict (``envelope.parse_content``'s), checked.

    Raises:
        envelope.FormatError: a key is missing or breaks the layout's rules.
    """
    layers = checks.names(content, "layers")
    counts = checks.counts(content, "param_counts", len(layers))
    dims = checks.counts(content, "dims", len(layers))
    seeds = checks.names(content, "seeds", unique=False)
    if len(seeds) != len(layers):
        raise envelope.FormatError(f"content key 'seeds' has {len(seeds)} entries for {len(layers)} layers")
    for seed in seeds:
        if len(seed) != 16 or any(c not in "0123456789abcdef" for c in seed):
            raise envelope.FormatError(f"content key 'seeds' holds {seed[:20]!r}, not 16 hex digits")
    for name, n, k in zip(layers, counts, dims):
        if not 1 <= k <= n:
            raise envelope.FormatError(f"layer {name!r} has sketch size {k} for {n} parameters")
    scheme = checks.optional_string(content, "scheme")
    if scheme is None:
        raise envelope.FormatError("content key 'scheme' is missing")
    return Layout(
        layers=tuple(layers),
        param_counts=tuple(int(n) for n in counts),
        dims=tuple(int(d) for d in dims),
        seeds=tuple(seeds),
        scheme=scheme,
        model=checks.optional_string(content, "model"),
        version=int(content["version"]),
    )


def architecture(parsed: Layout) -> str:
    """Eight hex digits naming what makes sketches comparable: the scheme and, per layer in name
    order, its name, parameter count, sketch size and seed (not the layer order, not the model)."""
    rows = sorted(zip(parsed.layers, parsed.param_counts, parsed.dims, parsed.seeds))
    return envelope.digest({"scheme": parsed.scheme, "layers": [list(r) for r in rows]})


def tag(content) -> str:
    """The tag of a layout's events: ``layer_dynamics/sketches/<digest>``."""
    return TAG_PREFIX + envelope.digest(content)


def metadata(content):
    """The ``SummaryMetadata`` of a layout's tag."""
    return envelope.summary_metadata(KIND, VERSION, content)


def summary(values, content, *, with_metadata=True, tag_name=None):
    """The ``Summary`` of one call's sketches.

    Args:
        values: ``(sum(dims),)`` values, every layer's sketch in layout order; cast to float32.
        content: a dict from ``layout``.
        with_metadata: attach the layout (needed on a tag's first event in each event file).
        tag_name: ``tag(content)`` when the caller has it already.

    Raises:
        ValueError: ``values`` does not fit the layout.
    """
    array = np.asarray(values, dtype=np.float32)
    width = sum(content["dims"])
    if array.shape != (width,):
        raise ValueError(f"values has shape {array.shape}; the layout needs ({width},)")
    value = summary_pb2.Summary.Value(
        tag=tag(content) if tag_name is None else tag_name,
        tensor=tensors.proto(array, types_pb2.DT_FLOAT),
    )
    if with_metadata:
        value.metadata.CopyFrom(metadata(content))
    return summary_pb2.Summary(value=[value])


def single_call_bytes(parsed: Layout, value):
    """The little-endian float32 bytes of a value that holds one call exactly as the layout says
    (every record the tracker writes); ``None`` for anything else, which ``decode`` then reads or
    refuses. Readers use it as they use ``layer_metrics.single_call_bytes``."""
    tensor = value.tensor
    if tensor.dtype != types_pb2.DT_FLOAT:
        return None
    dims = tensor.tensor_shape.dim
    width = parsed.shape[1]
    if len(dims) != 1 or dims[0].size != width:
        return None
    content = tensor.tensor_content
    return content if len(content) == 4 * width else None


def check(parsed: Layout, value) -> None:
    """Raises ``envelope.FormatError`` unless ``value`` holds one call's sketches of ``parsed``."""
    decode(parsed, value, 0)


def decode(parsed: Layout, value, step, steps_value=None):
    """The call one event holds, as the columns store takes it.

    Returns:
        ``(steps, values)``: int64 ``[step]`` and float32 ``(1, 1, sum(dims))``.

    Raises:
        envelope.FormatError: the tensor does not fit the layout, or the event packs calls.
    """
    if steps_value is not None:
        raise envelope.FormatError("sketch events hold one call each; this one packs steps")
    array = tensors.decode(value.tensor, types_pb2.DT_FLOAT)
    width = parsed.shape[1]
    if array.shape != (width,):
        raise envelope.FormatError(f"tensor has shape {array.shape}; the layout needs ({width},)")
    return np.array([step], dtype=np.int64), array.reshape(1, 1, width)
