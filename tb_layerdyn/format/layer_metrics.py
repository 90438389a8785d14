"""The per-layer metrics payload: its tag, its layout, its tensor, built and decoded in one place.

One logging call (or several, packed) writes one event with one tensor summary under
``layer_dynamics/metrics/<digest>``, where the digest names the layout (``envelope.digest``): a
layout that changes (a layer appears, the depth order is learned, another model is logged) gets a
tag of its own, and readers merge a model's tags by layer name.

Layout (``plugin_data.content``)
--------------------------------
``metrics``       metric names, one per tensor row (``METRIC_NAMES`` holds those this release
                  writes; readers index rows by this list, so a newer writer may add some)
``layers``        layer names in depth order, input -> output
``param_counts``  scalar parameters of each layer
``groups``        ``{"name", "kind", "members"}`` dicts: ``kind`` ``"block"`` or ``"user"``,
                  ``members`` layers of ``layers``
``order``         ``"forward"`` (the order modules first ran) or ``"registration"``
``granularity``   ``"layer"`` (a module's parameters together) or ``"parameter"``
``rwc``           the RWC variants logged: ``"l1"``, ``"elementwise"`` or ``"both"``
``model``         the tracker's name when several models share a writer, else absent (version 2+)
``descriptions``  per layer a short description such as ``"Linear 784→512"`` (optional, version 2+)

Tensor
------
float32 of shape ``(len(metrics), len(layers) + len(groups))`` for one call at the event's step:
row ``i`` is metric ``metrics[i]``, the first columns the layers in depth order, then the groups.
Several calls may be packed into one event: the tensor is ``(calls, metrics, columns)`` and a
second value in the same event, ``<tag>/steps``, holds their steps as int64, strictly ascending.
NaN marks a value that is undefined at that step.

Since version 3 the event's step is the **first** call's step. TensorBoard's loaders apply their
rule for a step that goes back (a record at step ``s`` drops the records kept at ``s`` and later)
to the event's step: at the first step, a packed record drops what its first call would drop,
and a record that a later restart drops holds only calls that the restart drops too. Reading the
kept records in order, each cutting the calls before it from its first step on, then gives the
same calls as one record per call. (A packed record at its last step, version 2's rule, would
drop the whole earlier record that a restart reaches into, its calls before the restart too.)
The steps value carries metadata of its own on its first event in each file (this plugin's
name, ``DATA_CLASS_TENSOR``, content ``{"kind": "layer_metrics_steps", "version": 3}``), so that
TensorBoard's loaders keep and serve it as they keep the values; readers find it by its tag
beside the values and never read that content.

Version 2 may pack calls with the event at the last call's step (no writer of this project did);
version 1 has no ``model``, ``descriptions`` or packed calls. Both are read as they were written.
"""

import dataclasses
from typing import Optional, Tuple

import numpy as np
from tensorboard.compat.proto import summary_pb2, types_pb2

from tb_layerdyn.format import checks, envelope, tensors

KIND = "layer_metrics"
VERSION = 3
# The kind named by the steps value's metadata (see the module docstring).
STEPS_KIND = KIND + "_steps"
TAG_PREFIX = envelope.TAG_PREFIX + "metrics/"
# Readers keep these payloads as columns of values (``reading.columns``).
STORAGE = "columns"
STEPS_SUFFIX = "/steps"

# Every per-layer metric this release can log, in the order it writes them.
METRIC_NAMES = (
    "rwc",
    "rwc_elementwise",
    "distance_from_init",
    "relative_distance_from_init",
    "update_size",
    "weight_norm",
    "grad_norm",
)
ORDERS = ("forward", "registration")
GRANULARITIES = ("layer", "parameter")
RWC_VARIANTS = ("l1", "elementwise", "both")
GROUP_KINDS = ("block", "user")


@dataclasses.dataclass(frozen=True)
class Group:
    """A named group of layers, measured from its members' summed sums."""

    name: str
    kind: str
    members: Tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Layout:
    """A checked layout, as readers use it (see the module docstring for each field)."""

    metrics: Tuple[str, ...]
    layers: Tuple[str, ...]
    param_counts: Tuple[int, ...]
    groups: Tuple[Group, ...]
    order: Optional[str]
    granularity: Optional[str]
    rwc: Optional[str]
    model: Optional[str]
    descriptions: Optional[Tuple[str, ...]]
    version: int

    @property
    def columns(self) -> Tuple[str, ...]:
        """The tensor's column names: the layers, then the groups."""
        return self.layers + tuple(g.name for g in self.groups)

    @property
    def shape(self) -> Tuple[int, int]:
        """The tensor shape of one call: ``(metrics, layers + groups)``."""
        return (len(self.metrics), len(self.layers) + len(self.groups))


def layout(
    *, metrics, layers, param_counts, order, granularity, rwc, groups, model=None, descriptions=None
):
    """The content dict of a per-layer metrics tag, for the writer.

    Args:
        metrics: metric names, one per tensor row, among ``METRIC_NAMES``.
        layers: layer names in depth order.
        param_counts: scalar parameters of each layer.
        order: ``"forward"`` or ``"registration"``.
        granularity: ``"layer"`` or ``"parameter"``.
        rwc: ``"l1"``, ``"elementwise"`` or ``"both"``.
        groups: ``{"name", "kind", "members"}`` dicts (``kind`` defaults to ``"user"``).
        model: the tracker's name, when several models share one writer.
        descriptions: per layer a short description (module class and shape).

    Returns:
        The dict (without ``kind`` and ``version``, which ``summary`` adds).

    Raises:
        ValueError: an argument breaks the layout's rules; the message names it.
    """
    unknown = [m for m in metrics if m not in METRIC_NAMES]
    if unknown:
        raise ValueError(f"metrics {unknown} are not among {list(METRIC_NAMES)}")
    for name, value, options in (
        ("order", order, ORDERS),
        ("granularity", granularity, GRANULARITIES),
        ("rwc", rwc, RWC_VARIANTS),
    ):
        if value not in options:
            raise ValueError(f"{name} must be one of {list(options)}, got {value!r}")
    content = {
        "metrics": [str(m) for m in metrics],
        "layers": [str(n) for n in layers],
        "param_counts": [int(n) for n in param_counts],
        "order": order,
        "granularity": granularity,
        "rwc": rwc,
        "groups": [
            {
                "name": str(g["name"]),
                "kind": g.get("kind", "user"),
                "members": [str(m) for m in g["members"]],
            }
            for g in groups
        ],
    }
    if model is not None:
        content["model"] = str(model)
    if descriptions is not None:
        content["descriptions"] = [str(d) for d in descriptions]
    return checks.built(content, parse_layout, KIND, VERSION)


def parse_layout(content) -> Layout:
    """The ``Layout`` of a content dict (``envelope.parse_content``'s), checked.

    Raises:
        envelope.FormatError: a key is missing or breaks the layout's rules.
    """
    metrics = checks.names(content, "metrics")
    layers = checks.names(content, "layers")
    param_counts = checks.counts(content, "param_counts", len(layers))
    raw_groups = content.get("groups", [])
    if not isinstance(raw_groups, list):
        raise envelope.FormatError("content key 'groups' must be a list")
    known = set(layers)
    groups = []
    for i, raw in enumerate(raw_groups):
        if not isinstance(raw, dict):
            raise envelope.FormatError(f"group {i} is a {type(raw).__name__}, not an object")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise envelope.FormatError(f"group {i} has no name")
        kind = raw.get("kind", "user")
        if kind not in GROUP_KINDS:
            raise envelope.FormatError(f"group {name!r} has kind {kind!r}, not one of {list(GROUP_KINDS)}")
        members = checks.names(raw, "members")
        missing = [m for m in members if m not in known]
        if missing:
            raise envelope.FormatError(f"group {name!r} names unknown layers {missing[:3]}")
        groups.append(Group(name, kind, tuple(members)))
    if len({g.name for g in groups}) != len(groups):
        raise envelope.FormatError("two groups share a name")
    descriptions = None
    if content.get("descriptions") is not None:
        descriptions = tuple(checks.names(content, "descriptions", unique=False))
        if len(descriptions) != len(layers):
            raise envelope.FormatError(
                f"content key 'descriptions' has {len(descriptions)} entries for {len(layers)} layers"
            )
    for key, options in (("order", ORDERS), ("granularity", GRANULARITIES), ("rwc", RWC_VARIANTS)):
        value = checks.optional_string(content, key)
        if value is not None and value not in options:
            raise envelope.FormatError(f"content key {key!r} is {value!r}, not one of {list(options)}")
    return Layout(
        metrics=tuple(metrics),
        layers=tuple(layers),
        param_counts=tuple(int(n) for n in param_counts),
        groups=tuple(groups),
        order=content.get("order"),
        granularity=content.get("granularity"),
        rwc=content.get("rwc"),
        model=checks.optional_string(content, "model"),
        descriptions=descriptions,
        version=int(content["version"]),
    )


def tag(content) -> str:
    """The tag of a layout's events: ``layer_dynamics/metrics/<digest>``."""
    return TAG_PREFIX + envelope.digest(content)


def metadata(content):
    """The ``SummaryMetadata`` of a layout's tag."""
    return envelope.summary_metadata(KIND, VERSION, content)


def steps_summary_metadata():
    """The ``SummaryMetadata`` of a packed record's ``<tag>/steps`` value."""
    return envelope.summary_metadata(STEPS_KIND, VERSION, {})


def summary(values, content, *, steps=None, with_metadata=True, tag_name=None, steps_metadata=None):
    """The ``Summary`` of one logging call, or of several packed into one event.

    Args:
        values: ``(metrics, layers + groups)`` for one call, or ``(calls, metrics, layers +
            groups)`` with ``steps``; cast to float32.
        content: a dict from ``layout``.
        steps: for packed calls, their steps, strictly ascending; write the event at the first.
        with_metadata: attach the layout. It is needed on the first event of a tag in each event
            file only; leaving it off later keeps every record small.
        tag_name: ``tag(content)`` when the caller has it already (it hashes the layout's JSON).
        steps_metadata: attach the steps value's metadata (``None``: as ``with_metadata``); it is
            needed on the first packed event of a tag in each event file only.

    Returns:
        A ``summary_pb2.Summary``: the values, plus ``<tag>/steps`` for packed calls.

    Raises:
        ValueError: ``values`` or ``steps`` do not fit the layout.
    """
    array = np.asarray(values, dtype=np.float32)
    one = (len(content["metrics"]), len(content["layers"]) + len(content["groups"]))
    name = tag(content) if tag_name is None else tag_name
    if steps is None:
        if array.shape != one:
            raise ValueError(
                f"values has shape {array.shape}; the layout needs {one} (metrics x (layers + groups))"
            )
        extra = []
    else:
        steps = np.asarray(steps, dtype=np.int64)
        if array.shape != (len(steps),) + one:
            raise ValueError(f"values has shape {array.shape}; {len(steps)} packed calls need {(len(steps),) + one}")
        if len(steps) == 0 or np.any(np.diff(steps) <= 0):
            raise ValueError("steps of packed calls must be non-empty and strictly ascending")
        extra = [summary_pb2.Summary.Value(
            tag=name + STEPS_SUFFIX, tensor=tensors.proto(steps, types_pb2.DT_INT64)
        )]
        if with_metadata if steps_metadata is None else steps_metadata:
            extra[0].metadata.CopyFrom(steps_summary_metadata())
    value = summary_pb2.Summary.Value(tag=name, tensor=tensors.proto(array, types_pb2.DT_FLOAT))
    if with_metadata:
        value.metadata.CopyFrom(metadata(content))
    return summary_pb2.Summary(value=[value] + extra)


def single_call_bytes(parsed: Layout, value):
    """The packed little-endian float32 bytes of a value that holds one call, exactly as the
    layout says (the common record); ``None`` for anything else, which ``decode`` then reads or
    refuses. Readers use it to keep a first read of a long run cheap."""
    tensor = value.tensor
    if tensor.dtype != types_pb2.DT_FLOAT:
        return None
    dims = tensor.tensor_shape.dim
    metrics, columns = parsed.shape
    if len(dims) != 2 or dims[0].size != metrics or dims[1].size != columns:
        return None
    content = tensor.tensor_content
    return content if len(content) == 4 * metrics * columns else None


def decode(parsed: Layout, value, step, steps_value=None):
    """The calls one event holds for a tag.

    Args:
        parsed: the tag's ``Layout``.
        value: the ``Summary.Value`` under the tag.
        step: the event's step.
        steps_value: the ``<tag>/steps`` value of the same event, if it has one.

    Returns:
        ``(steps, values)``: int64 ``(calls,)`` and float32 ``(calls, metrics, columns)``.

    Raises:
        envelope.FormatError: the tensor does not fit the layout, or packed steps are missing,
            unordered or do not end at the event's step.
    """
    array = tensors.decode(value.tensor, types_pb2.DT_FLOAT)
    one = parsed.shape
    if array.shape == one and steps_value is None:
        return np.array([step], dtype=np.int64), array[None]
    if parsed.version < 2 or array.ndim != 3 or array.shape[1:] != one:
        raise envelope.FormatError(f"tensor has shape {array.shape}; the layout needs {one}")
    if steps_value is None:
        raise envelope.FormatError(f"{array.shape[0]} packed calls without their steps")
    steps = tensors.decode(steps_value.tensor, types_pb2.DT_INT64)
    if steps.shape != (array.shape[0],):
        raise envelope.FormatError(f"{array.shape[0]} packed calls with steps of shape {steps.shape}")
    if np.any(np.diff(steps) <= 0):
        raise envelope.FormatError("packed steps are not ascending")
    # Version 3 writes the event at the first call's step, version 2 at the last.
    if int(steps[0] if parsed.version >= 3 else steps[-1]) != step:
        which = "first" if parsed.version >= 3 else "last"
        raise envelope.FormatError(f"packed steps do not have the event's step as their {which}")
    return steps.astype(np.int64, copy=False), array
