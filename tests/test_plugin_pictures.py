"""The ``pictures`` and ``frame`` routes through TensorBoard's real WSGI app, under both loaders.

LeNet-5 is logged by the tracker with every picture kind, beside a second tracker named ``ema``
on the same writer; torch-free runs add a layout that grows, hostile run names and a run without
pictures. TensorBoard is started as a plain ``tensorboard --logdir`` (its loaders keep one sample
per tag of this plugin): every picture step must still be served. Bodies are checked against
references built from the event files, decoded straight from their records.
"""

import copy
import time
import urllib.parse

import numpy as np
import pytest
import torch
from torch.nn import functional as F
from torch.utils.tensorboard import SummaryWriter

import picture_logdir
from conftest import LOADERS, make_layout, random_values, tensorboard_client, write_layer_metrics
from route_helpers import ok_binary, ok_json
from picture_helpers import LeNet
from tb_layerdyn import LayerDynamics
from tb_layerdyn.format import pictures as payload

PREFIX = "/data/plugin/layer_dynamics/"
LENET = "lenet/seed0"
HOSTILE_RUNS = ("<img src=x onerror=alert(1)>", "..%2F..", "ünïcødé ✓ 层 & x=1#y?")
STEPS = 8
EVERY = 3


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugin_pictures")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = LeNet()
        ema = copy.deepcopy(model).requires_grad_(False)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        x, y = torch.randn(8, 1, 32, 32), torch.randint(0, 10, (8,))
        with SummaryWriter(str(root / LENET)) as writer:
            tracker = LayerDynamics(model, writer, histogram_every=None, images_every=EVERY, probe=x[:1])
            averaged = LayerDynamics(ema, writer, histogram_every=None, images_every=EVERY,
                                     images=["weights"], name="ema")
            for step in range(STEPS):
                F.cross_entropy(model(x), y).backward()
                opt.step()
                tracker.log(step)
                opt.zero_grad()
                with torch.no_grad():
                    for slow, fast in zip(ema.parameters(), model.parameters()):
                        slow.lerp_(fast, 0.5)
                averaged.log(step)
    finally:
        torch.set_num_threads(threads)
    rng = np.random.default_rng(2)
    small = make_layout(["a", "b"], metrics=["rwc"])
    before = picture_logdir.content("updates", ["a"], [[2, 2]])
    after = picture_logdir.content("updates", ["a", "b"], [[2, 2], [1, 3]])
    for run in HOSTILE_RUNS + ("grown",):
        write_layer_metrics(str(root / run), small, range(4), random_values(rng, 4, small))
        picture_logdir.write(str(root / run), [
            (1, before, [picture_logdir.random_planes(rng, "updates", (2, 2))]),
            (2, after, [picture_logdir.random_planes(rng, "updates", (2, 2)), None]),
            (3, after, [picture_logdir.random_planes(rng, "updates", s) for s in ((2, 2), (1, 3))]),
        ])
    write_layer_metrics(str(root / "metrics_only"), small, range(4), random_values(rng, 4, small))
    return root


@pytest.fixture(scope="module", params=LOADERS)
def client(request, logdir):
    with tensorboard_client(str(logdir), request.param) as served:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            runs = _json(_get(served, "runs"))["runs"]
            if len(runs) == len(HOSTILE_RUNS) + 4:
                break
            time.sleep(0.1)
        yield served


def _get(client, route, **query):
    return client.get(PREFIX + route + "?" + urllib.parse.urlencode(query))


_json = ok_json


def _frame(response):
    """``(header, [png bytes per plane of each picture, in order])`` of a ``frame`` answer."""
    header, payload, _ = ok_binary(response)
    offset, blobs = 0, []
    for picture in header["pictures"]:
        for plane in picture["planes"] if picture else []:
            blobs.append(payload[offset:offset + plane["bytes"]])
            offset += plane["bytes"]
    assert offset == len(payload)
    return header, blobs


# ---------------------------------------------------------------- references


def _reference(run_dir, model=None):
    """The ``pictures`` body, per kind, built by brute force from the records: ``{kind: body}``
    plus ``{kind: {step: (wall time, [Picture or None per layer])}}``."""
    from tensorboard.backend.event_processing import event_file_loader
    import os

    frames, layouts = {}, {}
    for name in sorted(os.listdir(run_dir)):
        if "tfevents" not in name:
            continue
        for event in event_file_loader.EventFileLoader(os.path.join(run_dir, name)).Load():
            for value in event.summary.value:
                if not value.tag.startswith(payload.TAG_PREFIX):
                    continue
                if value.HasField("metadata"):
                    from tb_layerdyn.format import envelope

                    layouts[value.tag] = payload.parse_layout(
                        envelope.parse_content(value.metadata, payload.KIND, payload.VERSION))
                layout = layouts[value.tag]
                if layout.model != model:
                    continue
                for index, picture in enumerate(payload.decode(layout, value)):
                    if picture is not None:  # one tag per kind here, steps ascending
                        frames.setdefault(layout.picture, {}).setdefault(layout.layers[index], {})[event.step] = (
                            event.wall_time, layout, index, picture)
    bodies = {}
    for kind in payload.PICTURES:
        if kind not in frames:
            continue
        by_layer = frames[kind]
        steps = sorted({s for layer in by_layer.values() for s in layer})
        layers = []
        newest = max((layout for layer in by_layer.values() for _, layout, _, _ in layer.values()),
                     key=lambda parsed: len(parsed.layers))
        for name in newest.layers:
            mine = by_layer[name]
            last = mine[max(mine)]
            scales = []
            for p, m in enumerate(newest.maps):
                quantiles = [picture.planes[p].quantiles for _, _, _, picture in mine.values()]
                if m == "diverging":
                    s = max(max(abs(a), abs(b)) for a, b in quantiles)
                    scales.append([-s, s])
                elif m == "opacity":
                    scales.append([0.0, max(0.0, max(b for _, b in quantiles))])
                else:
                    scales.append([min(a for a, _ in quantiles), max(b for _, b in quantiles)])
            layers.append({
                "name": name,
                "description": last[1].descriptions[last[2]],
                "shape": list(last[1].drawn_shape(last[2])),
                "absent": [s for s in steps if s not in mine],
                "scales": scales,
            })
        bodies[kind] = {
            "kind": kind,
            "planes": list(newest.planes),
            "maps": list(newest.maps),
            "steps": steps,
            "wall_times": [max(layer[s][0] for layer in by_layer.values() if s in layer) for s in steps],
            "layers": layers,
        }
    return bodies, frames


# ---------------------------------------------------------------- the routes


def test_runs_say_which_pictures_each_entry_logged(client):
    runs = {(e["run"], e["model"]): e["pictures"] for e in _json(_get(client, "runs"))["runs"]}
    assert runs[(LENET, None)] == list(payload.PICTURES)
    assert runs[(LENET, "ema")] == ["weights"]
    assert runs[("metrics_only", None)] == []
    assert runs[("grown", None)] == ["updates"]


@pytest.mark.parametrize("model", [None, "ema"])
def test_pictures_lists_every_step_of_every_kind(client, logdir, model):
    query = {"run": LENET} if model is None else {"run": LENET, "model": model}
    body = _json(_get(client, "pictures", **query))
    expected, _ = _reference(str(logdir / LENET), model)
    assert body == {"run": LENET, "model": model, "kinds": list(expected.values())}
    kinds = {k["kind"]: k for k in body["kinds"]}
    assert kinds["weights"]["steps"] == [0, 3, 6]
    if model is None:
        assert [layer["absent"] for layer in kinds["updates"]["layers"]] == [[]] * 5
        assert kinds["updates"]["steps"] == [3, 6]
        assert kinds["travel"]["planes"] == ["travel", "weight"]
        assert kinds["travel"]["maps"] == ["opacity", "diverging"]


def test_every_frame_holds_the_logged_pictures(client, logdir):
    """Every step of every kind is served although TensorBoard keeps one sample per tag; each
    frame holds every layer's PNGs and facts as logged, in the listing's layer order."""
    listing = _json(_get(client, "pictures", run=LENET))
    _, frames = _reference(str(logdir / LENET))
    for kind in listing["kinds"]:
        names = [layer["name"] for layer in kind["layers"]]
        for step, wall_time in zip(kind["steps"], kind["wall_times"]):
            header, blobs = _frame(_get(client, "frame", run=LENET, kind=kind["kind"], step=step))
            assert {k: header[k] for k in ("run", "model", "kind", "step", "wall_time", "layers")} == {
                "run": LENET, "model": None, "kind": kind["kind"], "step": step, "wall_time": wall_time,
                "layers": names,
            }
            expected_blobs = []
            for name, got in zip(names, header["pictures"]):
                _, layout, index, picture = frames[kind["kind"]][name][step]
                assert got == {
                    "description": layout.descriptions[index],
                    "shape": list(layout.shapes[index]),
                    "tile": list(layout.tiles[index]),
                    "cells": layout.cells[index],
                    "planes": [
                        {"interval": list(p.interval), "quantiles": list(p.quantiles), "bytes": len(p.png)}
                        for p in picture.planes
                    ],
                }
                expected_blobs.extend(p.png for p in picture.planes)
            assert blobs == expected_blobs


def test_a_grown_layout_is_one_filmstrip(client):
    body = _json(_get(client, "pictures", run="grown"))
    [updates] = body["kinds"]
    assert updates["steps"] == [1, 2, 3]
    assert [(layer["name"], layer["absent"], layer["shape"]) for layer in updates["layers"]] == [
        ("a", [], [2, 2]), ("b", [1, 2], [1, 3]),
    ]
    header, blobs = _frame(_get(client, "frame", run="grown", kind="updates", step=2))
    assert header["layers"] == ["a", "b"] and header["pictures"][1] is None and len(blobs) == 1
    header, blobs = _frame(_get(client, "frame", run="grown", kind="updates", step=1))
    assert header["pictures"][1] is None and header["pictures"][0]["shape"] == [2, 2]


def test_a_run_without_pictures_lists_none(client):
    assert _json(_get(client, "pictures", run="metrics_only")) == {
        "run": "metrics_only", "model": None, "kinds": []}


@pytest.mark.parametrize("run", HOSTILE_RUNS)
def test_hostile_run_names_round_trip(client, run):
    body = _json(_get(client, "pictures", run=run))
    assert body["run"] == run and [k["kind"] for k in body["kinds"]] == ["updates"]
    header, _ = _frame(_get(client, "frame", run=run, kind="updates", step=3))
    assert header["run"] == run


BAD_QUERIES = [
    ("pictures", {}, 400, "'run'"),
    ("pictures", {"run": ""}, 400, "'run'"),
    ("pictures", {"run": LENET, "model": ""}, 400, "'model'"),
    ("pictures", {"run": "nope"}, 404, "nope"),
    ("pictures", {"run": LENET, "model": "teacher"}, 404, "teacher"),
    ("pictures", {"run": "../" + LENET}, 404, "../"),
    ("frame", {"run": LENET, "step": 0}, 400, "'kind'"),
    ("frame", {"run": LENET, "kind": "weights"}, 400, "'step'"),
    ("frame", {"run": LENET, "kind": "histograms", "step": 0}, 400, "'kind'"),
    ("frame", {"run": LENET, "kind": "weights", "step": "-1"}, 400, "'step'"),
    ("frame", {"run": LENET, "kind": "weights", "step": "1e3"}, 400, "'step'"),
    ("frame", {"run": LENET, "kind": "weights", "step": "9" * 30}, 400, "'step'"),
    ("frame", {"kind": "weights", "step": 0}, 400, "'run'"),
    ("frame", {"run": "nope", "kind": "weights", "step": 0}, 404, "nope"),
    ("frame", {"run": LENET, "kind": "weights", "step": 1}, 404, "steps 0, 3, 6 (3 steps)"),
    ("frame", {"run": LENET, "kind": "updates", "step": 0}, 404, "no updates picture at step 0"),
    ("frame", {"run": LENET, "kind": "travel", "step": 0, "model": "ema"}, 404, "no travel pictures"),
    ("frame", {"run": "metrics_only", "kind": "weights", "step": 0}, 404, "has no weights pictures"),
]


@pytest.mark.parametrize("route,query,status,named", BAD_QUERIES)
def test_bad_queries_get_a_clear_4xx(client, route, query, status, named):
    response = _get(client, route, **query)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["Content-Type"].startswith("text/plain")
    assert named in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "raw_query", ["run=%ff%fe&kind=weights&step=0", "run=lenet%2Fseed0&kind=%ff&step=0",
                  "run=lenet%2Fseed0&kind=weights&step=%ff", "run&kind&step", "=&=&", "%", "run=%zz"],
)
def test_malformed_query_strings_never_500(client, raw_query):
    for route in ("pictures", "frame"):
        response = client.get(PREFIX + route + "?" + raw_query)
        assert response.status_code in (200, 400, 404), (route, raw_query, response.status_code)
