"""The population routes (``sketches``, ``distances``, ``trajectories``) through TensorBoard's real
WSGI app, under both of its loaders, over a population logged by the tracker
(``population_helpers``): bodies against ``read()`` (which shares their code) and against exact
distances from the saved weights, binary against JSON, bad queries against 4xx.
"""

import time
import urllib.parse

import numpy as np
import pytest

import population_helpers as helpers
import tb_layerdyn
from conftest import LOADERS, tensorboard_client
from route_helpers import ok_binary, ok_json

PREFIX = "/data/plugin/layer_dynamics/"
POP_RUNS = [f"pop/seed{s:02d}" for s in range(helpers.SEEDS)] + ["pop/short"]


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("plugin_population"))
    logdir = helpers.write_population(root)
    return root, logdir, tb_layerdyn.read(logdir)


@pytest.fixture(scope="module", params=LOADERS)
def client(request, population):
    with tensorboard_client(population[1], request.param) as served:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            body = _json(_get(served, "sketches"))
            if sum(len(p["runs"]) for p in body["populations"]) == len(POP_RUNS) + 1:
                break
            time.sleep(0.1)
        yield served


def _get(client, route, query=()):
    return client.get(PREFIX + route + ("?" + urllib.parse.urlencode(list(query)) if query else ""))


_json = ok_json


def _binary(response):
    header, payload, length = ok_binary(response)
    assert (4 + length) % 8 == 0
    return header, np.frombuffer(payload, dtype="<f4")


def _architecture(client):
    return _json(_get(client, "sketches"))["populations"][0]["architecture"]


def test_sketches_lists_each_population_with_its_steps(client, population):
    body = _json(_get(client, "sketches"))
    assert body["loading"] is False
    main, wide = body["populations"]
    assert main["model"] is None and main["runs"] == POP_RUNS and wide["runs"] == ["other/wide"]
    assert main["layers"] == list(helpers.LAYERS) and main["dims"] == [128, 128, 99]
    assert main["exact"] == [False, False, True] and main["param_counts"] == [1088, 2080, 99]
    assert main["steps"] == list(range(helpers.STEPS))
    assert main["counts"] == [len(POP_RUNS)] * (helpers.STEPS - 1) + [len(POP_RUNS) - 1]
    assert main["missing"] == [[]] * helpers.SEEDS + [[helpers.STEPS - 1]]
    assert main["rms"] == pytest.approx((2 / 128) ** 0.5) and main["bound_95"] == pytest.approx((40 / 128) ** 0.5)
    expected = population[2].populations()[0]
    assert main["architecture"] == expected.architecture
    assert _json(_get(client, "sketches", [("model", "ema")]))["populations"] == []


@pytest.mark.parametrize("layer", [None, "0", "4"])
def test_distances_are_reads_and_near_the_exact_ones(client, population, layer):
    root, _, runs = population
    architecture = _architecture(client)
    query = [("step", 4), ("architecture", architecture)] + ([("layer", layer)] if layer else [])
    body = _json(_get(client, "distances", query))
    want = runs.distances(4, layer, architecture=architecture)
    assert body["runs"] == want.names and body["missing"] == want.missing == []
    assert body["order"] == want.order and sorted(body["order"]) == list(range(len(want.names)))
    matrix = np.array(body["matrix"], dtype=np.float32)  # nine digits: float32 exactly
    np.testing.assert_array_equal(matrix, want.matrix.astype(np.float32))
    matrix = matrix.astype(np.float64)
    assert body["max"] == pytest.approx(float(want.matrix.max()))
    assert (body["rms"], body["bound_95"]) == (want.rms, want.bound_95)
    exact = helpers.exact_distances(root, body["runs"], 4, layer)
    upper = np.triu_indices(len(exact), 1)
    relative = np.abs(matrix[upper] ** 2 / exact[upper] ** 2 - 1)
    if layer == "4":
        assert relative.max() < 1e-5
    else:
        assert (relative > body["bound_95"]).mean() <= 0.05


def test_binary_distances_hold_the_json_answer(client):
    query = [("step", 2), ("architecture", _architecture(client))]
    body = _json(_get(client, "distances", query))
    header, values = _binary(_get(client, "distances", query + [("format", "binary")]))
    assert header["points"] == len(body["runs"])
    assert {k: v for k, v in header.items() if k != "points"} == {k: v for k, v in body.items() if k != "matrix"}
    np.testing.assert_array_equal(values.reshape(header["points"], header["points"]),
                                  np.array(body["matrix"], dtype=np.float32))


def test_a_subset_lacking_the_step_and_order_by_name(client):
    architecture = _architecture(client)
    query = [("step", helpers.STEPS - 1), ("architecture", architecture), ("order", "name"),
             ("run", "pop/short"), ("run", "pop/seed03"), ("run", "pop/seed01")]
    body = _json(_get(client, "distances", query))
    assert body["runs"] == ["pop/seed01", "pop/seed03"] and body["missing"] == ["pop/short"]
    assert body["order"] == [0, 1]
    full = _json(_get(client, "distances", [("step", helpers.STEPS - 1), ("architecture", architecture)]))
    i, j = full["runs"].index("pop/seed01"), full["runs"].index("pop/seed03")
    assert body["matrix"][0][1] == full["matrix"][i][j]


def test_trajectories_are_reads(client, population):
    architecture = _architecture(client)
    body = _json(_get(client, "trajectories", [("architecture", architecture), ("layer", "2")]))
    want = population[2].trajectories("2", architecture=architecture)
    assert body["runs"] == want.names == POP_RUNS and body["steps"] == list(range(helpers.STEPS))
    for key in ("x", "y"):
        got = np.array([[np.nan if v is None else v for v in row] for row in body[key]], dtype=np.float32)
        np.testing.assert_array_equal(got, getattr(want, key).astype(np.float32))
    assert body["x"][-1][-1] is None  # pop/short has no last step
    assert body["explained"] == pytest.approx(list(want.explained))
    header, values = _binary(_get(client, "trajectories", [("architecture", architecture), ("layer", "2"),
                                                         ("format", "binary")]))
    shape = (len(header["runs"]), header["points"])
    x, y = values[: shape[0] * shape[1]].reshape(shape), values[shape[0] * shape[1]:].reshape(shape)
    np.testing.assert_array_equal(x, want.x.astype(np.float32))
    np.testing.assert_array_equal(y, want.y.astype(np.float32))


@pytest.mark.parametrize("route,query,status,named", [
    ("distances", [], 400, "step"),
    ("distances", [("step", "-1")], 400, "step"),
    ("distances", [("step", "1e3")], 400, "step"),
    ("distances", [("step", "2")], 400, "architecture"),  # two architectures of unnamed trackers
    ("distances", [("step", "2"), ("architecture", "")], 400, "architecture"),
    ("distances", [("step", "2"), ("architecture", "zzz")], 404, "zzz"),
    ("distances", [("step", "2"), ("model", "")], 400, "model"),
    ("distances", [("step", "2"), ("model", "ema")], 404, "ema"),
    ("distances", [("step", "2"), ("order", "random")], 400, "order"),
    ("distances", [("step", "2"), ("format", "xml")], 400, "format"),
    ("distances", [("step", "2"), ("run", "")], 400, "run"),
    ("trajectories", [("layer", "")], 400, "layer"),
    ("trajectories", [("format", "csv")], 400, "format"),
])
def test_bad_queries_get_a_clear_4xx(client, route, query, status, named):
    response = _get(client, route, query)
    assert response.status_code == status, response.get_data(as_text=True)
    assert named in response.get_data(as_text=True)


@pytest.mark.parametrize("query,status,named", [
    ([("step", "99")], 404, "steps 0, 1, 2, 3"),
    ([("step", "2"), ("layer", "nope")], 404, "nope"),
    ([("step", "2"), ("run", "other/wide")], 404, "other/wide"),
])
def test_unknown_things_in_a_population_are_404(client, query, status, named):
    response = _get(client, "distances", query + [("architecture", _architecture(client))])
    assert response.status_code == status, response.get_data(as_text=True)
    assert named in response.get_data(as_text=True)


@pytest.mark.parametrize("raw", [
    "step=%ff", "step=2&architecture=%00", "step=2&run=%ff%fe", "step=99999999999999999999999",
    "step=2&layer=%E2%80%AE", "run=a&run=b&step=", "step=2&step=3", "&&&=", "step=2&order=",
])
def test_malformed_query_strings_never_500(client, raw):
    for route in ("distances", "trajectories", "sketches"):
        response = client.get(PREFIX + route + "?" + raw)
        assert response.status_code < 500, (route, raw, response.get_data(as_text=True))
