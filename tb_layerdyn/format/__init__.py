"""The event payloads of tb_layerdyn: the only code the writer, ``read()`` and the plugin share.

``envelope`` holds what every payload shares (plugin name, content, versions, ``FormatError``);
one module per payload kind owns that kind's tag, content, tensor and the rules to build, check
and decode them; ``framing`` splits event files into records. Nothing here imports torch.
"""

from tb_layerdyn.format import layer_metrics, pictures, sketches, sweeps

# Every payload kind, by the tag prefix its module owns.
KINDS = (layer_metrics, sweeps, pictures, sketches)


def kind_of(tag):
    """The module of the payload kind a tag belongs to, or ``None`` for a tag of another plugin."""
    for kind in KINDS:
        if tag.startswith(kind.TAG_PREFIX):
            return kind
    return None
