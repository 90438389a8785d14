"""Pure summary builders: numpy in, ``Summary`` proto out, no I/O and no torch.

The layout content of a per-layer metrics payload (see ``metadata`` for the tensor) is a dict:

``kind``         ``"layer_metrics"``
``metrics``      metric names, one per tensor row (a subset of ``metadata.METRIC_NAMES``)
``layers``       layer names in depth order, input -> output
``param_counts`` number of scalar parameters of each layer
``order``        ``"forward"`` (order modules first ran in a forward pass) or ``"registration"``
``granularity``  ``"layer"`` (a module's own parameters together) or ``"parameter"`` (each tensor)
``rwc``          which RWC variants were logged: ``"l1"``, ``"elementwise"`` or ``"both"``
``groups``       a list of ``{"name", "kind", "members"}``; ``kind`` is ``"block"`` or ``"user"``
"""

import numpy as np
from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

from tb_layerdyn.format import envelope as metadata

LAYOUT_KEYS = ("kind", "metrics", "layers", "param_counts", "order", "granularity", "rwc", "groups")


def layer_metrics_layout(
    *, metrics, layers, param_counts, order, granularity, rwc, groups
):
    """Builds and checks the layout content dict of a per-layer metrics payload."""
    metrics = [str(m) for m in metrics]
    unknown = [m for m in metrics if m not in metadata.METRIC_NAMES]
    if unknown:
        raise ValueError(f"metrics {unknown} are not among {list(metadata.METRIC_NAMES)}")
    layers = [str(name) for name in layers]
    param_counts = [int(n) for n in param_counts]
    if len(param_counts) != len(layers):
        raise ValueError(
            f"param_counts has {len(param_counts)} entries for {len(layers)} layers"
        )
    if order not in ("forward", "registration"):
        raise ValueError(f"order must be 'forward' or 'registration', got {order!r}")
    if granularity not in ("layer", "parameter"):
        raise ValueError(f"granularity must be 'layer' or 'parameter', got {granularity!r}")
    if rwc not in ("l1", "elementwise", "both"):
        raise ValueError(f"rwc must be 'l1', 'elementwise' or 'both', got {rwc!r}")
    known = set(layers)
    checked_groups = []
    for group in groups:
        members = [str(m) for m in group["members"]]
        missing = [m for m in members if m not in known]
        if missing:
            raise ValueError(f"group {group['name']!r} names unknown layers {missing}")
        kind = group.get("kind", "user")
        if kind not in ("block", "user"):
            raise ValueError(f"group kind must be 'block' or 'user', got {kind!r}")
        checked_groups.append({"name": str(group["name"]), "kind": kind, "members": members})
    return {
        "kind": metadata.KIND_LAYER_METRICS,
        "metrics": metrics,
        "layers": layers,
        "param_counts": param_counts,
        "order": order,
        "granularity": granularity,
        "rwc": rwc,
        "groups": checked_groups,
    }


def layer_metrics_pb(values, layout, *, with_metadata=True, tag=None):
    """Builds the ``Summary`` of one logging call.

    Args:
        values: array-like of shape ``(len(metrics), len(layers) + len(groups))``; cast to float32.
        layout: a dict from ``layer_metrics_layout``.
        with_metadata: attach the layout. It is needed on the first event of a tag in each event
            file only; leaving it off later keeps every record small.
        tag: ``metadata.metrics_tag(layout)`` when the caller has it already (it hashes the
            layout's JSON, which would otherwise cost more than the rest of this function).

    Returns:
        A ``summary_pb2.Summary`` with one value under ``metadata.metrics_tag(layout)``.
    """
    array = np.asarray(values, dtype=np.float32)
    expected = (len(layout["metrics"]), len(layout["layers"]) + len(layout["groups"]))
    if array.shape != expected:
        raise ValueError(
            f"values has shape {array.shape}; the layout needs {expected} "
            "(metrics x (layers + groups))"
        )
    value = summary_pb2.Summary.Value(
        tag=metadata.metrics_tag(layout) if tag is None else tag,
        tensor=_float32_tensor_proto(array),
    )
    if with_metadata:
        value.metadata.CopyFrom(metadata.create_summary_metadata(layout))
    return summary_pb2.Summary(value=[value])


def _float32_tensor_proto(array):
    """The ``TensorProto`` ``tensor_util.make_tensor_proto`` builds for a float32 array (packed
    little-endian ``tensor_content``), without its generic dtype and shape inference, which costs
    several times more than the encoding on every logging call."""
    proto = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, tensor_content=array.astype("<f4", copy=False).tobytes()
    )
    proto.tensor_shape.dim.extend(tensor_shape_pb2.TensorShapeProto.Dim(size=n) for n in array.shape)
    return proto
