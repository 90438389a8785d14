"""Writing picture events without torch, as the tracker writes them: for the reading and route tests.

Each picture is a single tile of the given shape, so a picture's values are its stored array.
"""

import os

import numpy as np
from tensorboard.compat.proto import event_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from tb_layerdyn.format import pictures as payload


def content(kind, layers, shapes, model=None):
    """A pictures layout of single-tile pictures, described as ``"<layer> test picture"``."""
    return payload.layout(
        picture=kind,
        layers=layers,
        shapes=shapes,
        tiles=shapes,
        cells=[1] * len(layers),
        descriptions=[f"{name} test picture" for name in layers],
        model=model,
    )


def random_planes(rng, kind, shape):
    """One picture's plane values: signed for diverging maps, non-negative for opacity."""
    planes = []
    for _, map_name in payload.PLANES[kind]:
        values = rng.normal(0.0, 1.0, size=shape)
        planes.append(np.abs(values) if map_name == "opacity" else values)
    return planes


def summary(kind_content, pictures, with_metadata):
    """The ``Summary`` of one call: ``pictures`` per layer, a list of plane arrays or ``None``."""
    kind = kind_content["picture"]
    planes = [
        None if values is None
        else [payload.encode(v, m) for v, (_, m) in zip(values, payload.PLANES[kind])]
        for values in pictures
    ]
    return payload.summary(planes, kind_content, with_metadata=with_metadata)


def write(run_dir, calls, start_wall=1000.0):
    """Writes one event file of picture calls.

    Args:
        run_dir: the run's directory (created if needed).
        calls: ``(step, content, pictures)`` in the order written; the first event of each tag
            carries its metadata.
        start_wall: the wall time of the first event (one second apart after it).

    Returns:
        The path of the event file.
    """
    os.makedirs(run_dir, exist_ok=True)
    writer = EventFileWriter(str(run_dir))
    seen = set()
    for i, (step, kind_content, pictures) in enumerate(calls):
        tag = payload.tag(kind_content)
        pb = summary(kind_content, pictures, with_metadata=tag not in seen)
        seen.add(tag)
        writer.add_event(event_pb2.Event(step=int(step), wall_time=start_wall + i, summary=pb))
    writer.close()
    names = [n for n in os.listdir(run_dir) if "tfevents" in n]
    return os.path.join(run_dir, max(names, key=lambda n: os.path.getmtime(os.path.join(run_dir, n))))


def plane_values(pictures_values, kind):
    """The values a plane holds once written: its float array quantized to 8-bit levels and back."""
    return [
        payload.encode(v, m).values() for v, (_, m) in zip(pictures_values, payload.PLANES[kind])
    ]
