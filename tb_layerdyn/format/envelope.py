"""What every payload of this plugin shares: the plugin name, tags, content and versions.

The writing side (inside training loops), ``tb_layerdyn.read`` and the TensorBoard plugin meet in
``tb_layerdyn.format`` and nowhere else. This module is its envelope: each payload kind (layer
metrics, sweeps, ...) has a module of its own beside it that owns its tag, its content (the JSON in
``plugin_data.content``), its tensor, and how both are built, checked and decoded. Nothing here
imports torch or the plugin.

Content
-------
``plugin_data.content`` is compact JSON: a dict that names its ``kind`` and the ``version`` of that
kind's payload, plus the kind's own keys. TensorBoard keeps the content of the first event of each
tag in each event file, so content describes a whole tag, never one event.

Versions
--------
Each kind numbers its payload. Readers accept versions up to their own and skip newer payloads
(raising ``NewerVersionError``, which a reader turns into one warning), so that an older release
never misreads a newer writer's data.
"""

import hashlib
import json

from tensorboard.compat.proto import summary_pb2

PLUGIN_NAME = "layer_dynamics"

# Every tag this plugin writes starts with this; each kind adds its own part.
TAG_PREFIX = PLUGIN_NAME + "/"


class FormatError(ValueError):
    """A payload this release cannot use: foreign, malformed, or of another shape than its content
    says. The message says what is wrong; readers skip the payload and say so once."""


class NewerVersionError(FormatError):
    """A payload written by a newer release: skipped, with a hint to upgrade."""

    def __init__(self, kind, version, readable):
        super().__init__(
            f"{kind} payload of version {version}; this release reads up to version {readable} "
            "(upgrade tb_layerdyn to read it)"
        )
        self.kind = kind
        self.version = version
        self.readable = readable


def digest(content):
    """A short stable digest of a content dict, used to name tags.

    Args:
        content: a JSON-serialisable dict.

    Returns:
        Eight hex characters; equal dicts give equal digests across processes and releases.
    """
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(canonical.encode("utf-8")).hexdigest()[:8]


def summary_metadata(kind, version, content, data_class=summary_pb2.DATA_CLASS_TENSOR):
    """The ``SummaryMetadata`` of a payload of this plugin.

    Args:
        kind: the payload kind (each kind module's ``KIND``).
        version: that kind's payload version (its ``VERSION``).
        content: the kind's keys, a JSON-serialisable dict without ``kind`` and ``version``.
        data_class: TensorBoard's data class of the values.

    Returns:
        A ``summary_pb2.SummaryMetadata`` with the plugin name, the data class and the content.
    """
    body = dict(content, kind=kind, version=version)
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=PLUGIN_NAME,
            content=json.dumps(body, separators=(",", ":")).encode("utf-8"),
        ),
        data_class=data_class,
    )


def parse_content(summary_metadata, kind, readable_version):
    """The content dict of one kind's payload, checked for the envelope's rules.

    Args:
        summary_metadata: the ``SummaryMetadata`` of the first event of a tag.
        kind: the kind the tag's prefix says it holds.
        readable_version: the newest version of that kind this release reads.

    Returns:
        The content dict (``kind`` and ``version`` included).

    Raises:
        NewerVersionError: the payload is of a newer version.
        FormatError: it belongs to another plugin, is not a JSON dict, or is of another kind.
    """
    plugin_data = summary_metadata.plugin_data
    if plugin_data.plugin_name != PLUGIN_NAME:
        raise FormatError(
            f"the tag's metadata names plugin {plugin_data.plugin_name!r}, not {PLUGIN_NAME!r}"
        )
    try:
        body = json.loads(plugin_data.content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise FormatError("the tag's content is not JSON") from None
    if not isinstance(body, dict):
        raise FormatError(f"the tag's content is a JSON {type(body).__name__}, not an object")
    if body.get("kind") != kind:
        raise FormatError(f"the tag's content is of kind {body.get('kind')!r}, expected {kind!r}")
    version = body.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise FormatError(f"the tag's content has no valid version (got {version!r})")
    if version > readable_version:
        raise NewerVersionError(kind, version, readable_version)
    return body
