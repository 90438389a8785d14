"""The one module both sides share: plugin name, payload version and content encoding.

The writing side (inside training loops) and the serving side (inside TensorBoard) meet here and
nowhere else. Nothing else in the project spells the plugin name or the payload layout. This module
imports neither torch nor the plugin.

Payload, version 1
------------------
Per-layer dynamics are written as **one tensor summary per logging call** under a tag
``layer_dynamics/metrics/<layout-digest>``. The tensor is float32 with shape
``(len(metrics), len(layers) + len(groups))``: row ``i`` is metric ``metrics[i]``, the first
``len(layers)`` columns are the layers in depth order and the remaining columns the groups in the
order listed. NaN marks a value that is undefined at that step (RWC at the first call, RWC of a
layer whose previous weights have zero norm, a gradient norm without gradients, a layer with a NaN).

The layout (names, order, sizes, how values were computed) lives in ``plugin_data.content`` as JSON
and is fixed for a tag: when the set of layers changes, a new layout gets a new digest and so a new
tag. Readers merge the tags of one run by layer name.

Interpolation sweeps (see ``SWEEP_TAG_PREFIX``) use the same content envelope with ``kind`` set to
``"sweep"``; their own module documents the tensor they write.
"""

import hashlib
import json
import logging

from tensorboard.compat.proto import summary_pb2

PLUGIN_NAME = "layer_dynamics"

# Version of the payload written by this release. Readers accept versions <= this one and skip newer
# payloads with a single warning, so that an old TensorBoard never misreads a newer writer's data.
PAYLOAD_VERSION = 1

METRICS_TAG_PREFIX = PLUGIN_NAME + "/metrics/"
SWEEP_TAG_PREFIX = PLUGIN_NAME + "/sweep/"

KIND_LAYER_METRICS = "layer_metrics"
KIND_SWEEP = "sweep"

# Every per-layer metric the writer can log, in the order it writes them. A payload lists the
# subset it holds in ``content["metrics"]``; readers index rows by that list, never by position here.
METRIC_NAMES = (
    "rwc",
    "rwc_elementwise",
    "distance_from_init",
    "relative_distance_from_init",
    "update_size",
    "weight_norm",
    "grad_norm",
)

logger = logging.getLogger(__name__)
_warned_versions = set()


def layout_digest(content):
    """A short stable digest of a layout, used to name its tag.

    Args:
        content: the layout dict (as given to ``create_summary_metadata``), without ``version``.

    Returns:
        Eight hex characters; equal layouts give equal digests across processes and releases.
    """
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(canonical.encode("utf-8")).hexdigest()[:8]


def metrics_tag(content):
    """The tag under which per-layer metrics with this layout are written."""
    return METRICS_TAG_PREFIX + layout_digest(content)


def create_summary_metadata(content):
    """Builds the ``SummaryMetadata`` for a payload of this plugin.

    Args:
        content: a JSON-serialisable dict; must hold ``kind``. ``version`` is added here.

    Returns:
        A ``summary_pb2.SummaryMetadata`` with the plugin name, a tensor data class and the content.
    """
    if "kind" not in content:
        raise ValueError(f"content must name its 'kind', got keys {sorted(content)}")
    body = dict(content, version=PAYLOAD_VERSION)
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=PLUGIN_NAME,
            content=json.dumps(body, separators=(",", ":")).encode("utf-8"),
        ),
        data_class=summary_pb2.DATA_CLASS_TENSOR,
    )


def parse_plugin_metadata(content):
    """Parses ``plugin_data.content`` written by any release of this plugin.

    Args:
        content: the raw bytes (or str) of ``plugin_data.content``.

    Returns:
        The content dict, or ``None`` when it cannot be used: not JSON, not a dict, or written by a
        newer payload version (logged once per version, so a reader skips it instead of misreading).
    """
    if isinstance(content, bytes):
        try:
            content = content.decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:
        body = json.loads(content)
    except (TypeError, ValueError):
        return None
    if not isinstance(body, dict) or not isinstance(body.get("version"), int):
        return None
    version = body["version"]
    if version > PAYLOAD_VERSION:
        if version not in _warned_versions:
            _warned_versions.add(version)
            logger.warning(
                "Skipping %s data of payload version %d; this release reads up to version %d. "
                "Upgrade tb_layerdyn to see it.",
                PLUGIN_NAME,
                version,
                PAYLOAD_VERSION,
            )
        return None
    return body
