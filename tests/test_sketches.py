"""Weight sketches: the payload, the tracker's capture, and distances read back against exact ones.

Exact distances come from weights saved with ``torch.save`` while training
(``population_helpers``); the error bound tested is the one ``format/sketches.py`` derives
(CountSketch variance, Chebyshev), and the variance formula itself is checked over many
projections.
"""

import logging
import math
import os

import numpy as np
import pytest
import torch
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from torch import nn
from torch.nn import functional as F

import population_helpers as helpers
import tb_layerdyn
from tb_layerdyn import LayerDynamics
from tb_layerdyn.format import envelope, sketches
from tb_layerdyn.reading import populations


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("population"))
    logdir = helpers.write_population(root)
    return root, logdir


@pytest.fixture(scope="module")
def read_runs(population):
    return tb_layerdyn.read(population[1])


class _Population:
    """``Runs`` with the main population's architecture passed to every call (the logdir also
    holds ``other/wide``, another architecture, so ``read()`` asks which)."""

    def __init__(self, runs):
        self.runs = runs
        self.architecture = runs.populations()[0].architecture

    def populations(self):
        return self.runs.populations()

    def population(self, *args, **kwargs):
        return self.runs.population(*args, **kwargs)

    def distances(self, *args, **kwargs):
        kwargs.setdefault("architecture", self.architecture)
        return self.runs.distances(*args, **kwargs)

    def trajectories(self, *args, **kwargs):
        kwargs.setdefault("architecture", self.architecture)
        return self.runs.trajectories(*args, **kwargs)

    def __contains__(self, key):
        return key in self.runs


@pytest.fixture(scope="module")
def runs(read_runs):
    return _Population(read_runs)


def _pop_runs():
    return [f"pop/seed{s:02d}" for s in range(helpers.SEEDS)] + ["pop/short"]


# ---------------------------------------------------------------- the payload


def test_layout_round_trips_and_names_an_architecture():
    content = sketches.layout(layers=["a", "b"], param_counts=[10, 500], dims=[10, 128],
                              seeds=["0123456789abcdef", "fedcba9876543210"])
    parsed = sketches.parse_layout(dict(content, kind=sketches.KIND, version=sketches.VERSION))
    assert parsed.exact == (True, False)
    assert parsed.offsets == {"a": (0, 10), "b": (10, 138)}
    swapped = sketches.layout(layers=["b", "a"], param_counts=[500, 10], dims=[128, 10],
                              seeds=["fedcba9876543210", "0123456789abcdef"])
    swapped = sketches.parse_layout(dict(swapped, kind=sketches.KIND, version=sketches.VERSION))
    assert swapped.architecture == parsed.architecture  # layer order does not matter
    other = sketches.layout(layers=["a", "b"], param_counts=[10, 500], dims=[10, 64],
                            seeds=["0123456789abcdef", "fedcba9876543210"])
    other = sketches.parse_layout(dict(other, kind=sketches.KIND, version=sketches.VERSION))
    assert other.architecture != parsed.architecture
    value = sketches.summary(np.arange(138), content).value[0]
    steps, array = sketches.decode(parsed, value, 7)
    assert steps.tolist() == [7] and array.shape == (1, 1, 138)
    assert array.reshape(-1).tolist() == list(range(138))


@pytest.mark.parametrize("bad", [
    {"dims": [11, 128]},  # more than the layer's parameters
    {"dims": [0, 128]},
    {"seeds": ["xyz", "fedcba9876543210"]},
    {"seeds": ["0123456789abcdef"]},
    {"param_counts": [10]},
    {"scheme": None},
])
def test_malformed_layouts_are_refused(bad):
    content = {"layers": ["a", "b"], "param_counts": [10, 500], "dims": [10, 128],
               "seeds": ["0123456789abcdef", "fedcba9876543210"], "scheme": sketches.SCHEME,
               "kind": sketches.KIND, "version": 1}
    content.update(bad)
    with pytest.raises(envelope.FormatError):
        sketches.parse_layout(content)


def test_the_hash_is_the_documented_splitmix64():
    # splitmix64's published first output for seed 0 (Vigna): 0xE220A8397B1DCDAF.
    assert int(sketches.hash_values("0000000000000000", 0, 1)[0]) == 0xE220A8397B1DCDAF
    buckets, minus = sketches.buckets_and_signs("00000000000000ff", 0, 100000, 128)
    assert buckets.min() == 0 and buckets.max() == 127
    counts = np.bincount(buckets, minlength=128)
    assert abs(counts.mean() - 100000 / 128) < 1e-9 and counts.std() < 4 * math.sqrt(100000 / 128)
    assert abs(minus.mean() - 0.5) < 0.01


def test_malformed_sketch_events_are_skipped_with_one_warning(tmp_path, caplog):
    run_dir = tmp_path / "logs" / "bad"
    os.makedirs(run_dir)
    content = sketches.layout(layers=["a"], param_counts=[4], dims=[4], seeds=["0123456789abcdef"])
    writer = EventFileWriter(str(run_dir))
    tag = sketches.tag(content)
    for step in range(3):
        pb = sketches.summary(np.arange(4) + step, content, with_metadata=step == 0)
        if step == 1:  # a tensor of the wrong length
            pb = sketches.summary(np.arange(4), content, with_metadata=False)
            pb.value[0].tensor.tensor_shape.dim[0].size = 3
        writer.add_event(event_pb2.Event(step=step, wall_time=1.0 + step, summary=pb))
    # A second tag whose content is not a sketches layout at all.
    broken = summary_pb2.Summary()
    value = broken.value.add(tag=sketches.TAG_PREFIX + "broken")
    value.tensor.CopyFrom(sketches.summary(np.zeros(4), content).value[0].tensor)
    value.metadata.plugin_data.plugin_name = envelope.PLUGIN_NAME
    value.metadata.plugin_data.content = b'{"kind":"sketches","version":1,"layers":"a"}'
    writer.add_event(event_pb2.Event(step=0, wall_time=5.0, summary=broken))
    writer.close()
    with caplog.at_level(logging.WARNING):
        runs = tb_layerdyn.read(str(tmp_path / "logs"))
    messages = [r.getMessage() for r in caplog.records]
    assert sum("'bad'" in m and tag in m for m in messages) == 1, messages
    assert sum("'bad'" in m and "broken" in m for m in messages) == 1, messages
    (found,) = runs.populations()
    assert found.members[0].steps.tolist() == [0, 2]


# ---------------------------------------------------------------- the tracker


def _train(sketch, seed=3):
    torch.manual_seed(seed)
    model = helpers.mlp()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    x, y = torch.randn(32, 16), torch.randint(0, 3, (32,))
    return model, opt, x, y


def test_logging_sketches_changes_no_rng_stream_model_or_optimizer(tmp_path):
    finals = {}
    for sketch in (False, True):
        model, opt, x, y = _train(sketch)
        tracker = LayerDynamics(
            model, str(tmp_path / f"s{sketch}"), histogram_every=None, sketches=sketch, sketch_every=1
        )
        np.random.seed(5)
        for step in range(4):
            F.cross_entropy(F.dropout(model(x), 0.2), y).backward()
            opt.step()
            tracker.log(step)
            opt.zero_grad()
        finals[sketch] = (
            [p.detach().clone() for p in model.parameters()],
            {k: v.clone() for k, v in opt.state_dict()["state"][0].items()},
            torch.get_rng_state(), np.random.get_state()[1].copy(),
        )
    for a, b in zip(finals[False][0], finals[True][0]):
        assert torch.equal(a, b)
    for key in finals[False][1]:
        assert torch.equal(finals[False][1][key], finals[True][1][key])
    assert torch.equal(finals[False][2], finals[True][2])
    assert np.array_equal(finals[False][3], finals[True][3])
    assert [p.runs for p in tb_layerdyn.read(str(tmp_path)).populations()] == [["sTrue"]]


def test_sketches_come_at_the_first_call_then_every_multiple_of_sketch_every(tmp_path):
    model, opt, x, y = _train(True)
    trackers = {
        every: LayerDynamics(model, str(tmp_path / f"every{every}"), histogram_every=None, **options)
        for every, options in ((10, {}), (4, {"sketch_every": 4}))
    }
    for step in range(3, 26):
        F.cross_entropy(model(x), y).backward()
        opt.step()
        for tracker in trackers.values():
            tracker.log(step)
        opt.zero_grad()
    for tracker in trackers.values():
        tracker.flush()
    runs = tb_layerdyn.read(str(tmp_path))
    steps = {m.run: m.steps.tolist() for p in runs.populations() for m in p.members}
    assert steps == {"every10": [3, 10, 20], "every4": [3, 4, 8, 12, 16, 20, 24]}
    # Every call has its metrics all the same.
    assert runs["every10"].steps.tolist() == list(range(3, 26))


def test_sketches_off_writes_none(tmp_path):
    model, opt, x, y = _train(False)
    tracker = LayerDynamics(model, str(tmp_path / "off"), histogram_every=None, sketches=False)
    tracker.log(0)
    tracker.flush()
    runs = tb_layerdyn.read(str(tmp_path))
    assert "off" in runs and runs.populations() == []


@pytest.mark.parametrize("bad", [{"sketch_size": 0}, {"sketch_size": 1.5}, {"sketch_size": True},
                                 {"sketches": "yes"}, {"sketch_size": sketches.MAX_SIZE + 1},
                                 {"sketch_every": 0}, {"sketch_every": 2.5}, {"sketch_every": True}])
def test_bad_sketch_options_are_refused(tmp_path, bad):
    with pytest.raises(ValueError):
        LayerDynamics(helpers.mlp(), str(tmp_path), **bad)


def test_logged_sketches_are_the_reference_sketch_of_the_saved_weights(population, runs):
    root, _ = population
    found = runs.populations()[0]
    assert found.layers == list(helpers.LAYERS)
    assert found.dims == [128, 128, 99] and found.exact == [False, False, True]
    member = found.members[found.runs.index("pop/seed03")]
    row = member.rows(np.array([4]))[0]
    start = 0
    for layer, dim in zip(found.layers, found.dims):
        model = helpers.mlp()
        shapes = [(n, tuple(p.shape)) for n, p in model.named_parameters() if n.startswith(layer + ".")]
        seed = sketches.layer_seed(layer, shapes)
        want = sketches.sketch_reference(helpers.saved_layer(root, "pop/seed03", 4, layer), seed, dim)
        np.testing.assert_allclose(row[start:start + dim], want, rtol=1e-5, atol=1e-5)
        start += dim


class _Scale(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.weight = nn.Parameter(torch.linspace(0.5, 1.5, n, dtype=torch.float64))

    def forward(self, x):
        return x * self.weight.float()


class _Mixed(nn.Module):
    """Parameters of every path the metrics' pass takes: a small channels_last convolution (the
    flat row, in storage order), a linear layer over the flat bound (reduced on its own), and a
    float64 weight (copied per call)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3).to(memory_format=torch.channels_last)
        self.big = nn.Linear(400, 200)  # 80,000 weights: above the flat path's 65,536
        self.head = nn.Linear(200, 5)
        self.scale = _Scale(5)
        self.small = nn.Linear(5, 3)

    def forward(self, x):
        h = self.conv(x).flatten(1)[:, :400]
        return self.small(self.scale(self.head(self.big(h))))


@pytest.mark.parametrize("size", [16, 256])
def test_sketches_of_every_kind_of_parameter_equal_the_reference_of_each_layer(tmp_path, size):
    torch.manual_seed(2)
    model = _Mixed()
    assert not model.conv.weight.is_contiguous()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tracker = LayerDynamics(model, str(tmp_path / "mixed"), histogram_every=None, sketch_size=size, sketch_every=2)
    x, y = torch.randn(4, 3, 12, 12).to(memory_format=torch.channels_last), torch.randint(0, 3, (4,))
    saved = {}
    for step in range(5):
        F.cross_entropy(model(x), y).backward()
        opt.step()
        tracker.log(step)
        opt.zero_grad()
        saved[step] = {name: p.detach().clone() for name, p in model.named_parameters()}
    tracker.flush()
    [found] = tb_layerdyn.read(str(tmp_path)).populations()
    [member] = found.members
    assert member.steps.tolist() == [0, 2, 4]
    for step in member.steps.tolist():
        row = member.rows(np.array([step]))[0]
        start = 0
        for layer, dim in zip(found.layers, found.dims):
            params = [(n, p) for n, p in saved[step].items() if n.rsplit(".", 1)[0] == layer]
            seed = sketches.layer_seed(layer, [(n, tuple(p.shape)) for n, p in params])
            flat = np.concatenate([p.double().reshape(-1).numpy() for _, p in params])  # logical order
            want = sketches.sketch_reference(flat, seed, dim)
            np.testing.assert_allclose(row[start:start + dim], want, rtol=1e-5, atol=1e-5, err_msg=layer)
            start += dim
    assert found.layers == ["conv", "big", "head", "scale", "small"]


def test_the_projection_is_the_same_for_every_run_of_an_architecture(runs):
    (pop, other) = runs.populations()
    assert len(pop.members) == helpers.SEEDS + 1 and [m.run for m in other.members] == ["other/wide"]
    assert pop.architecture != other.architecture


# ---------------------------------------------------------------- distances against exact ones


def test_exact_layers_give_exact_distances(population, runs):
    root, _ = population
    result = runs.distances(3, layer="4")
    assert result.rms == 0 and result.bound_95 == 0
    exact = helpers.exact_distances(root, result.names, 3, "4")
    np.testing.assert_allclose(result.matrix, exact, rtol=1e-5, atol=1e-6)


def test_estimated_distances_are_within_the_derived_bound(population, runs):
    """Every pair, layer and step: the relative error of the squared distance. By the derivation
    it exceeds ``bound_95`` with probability at most 5% per estimate (Chebyshev), so at most 5%
    of them may. The mean and RMS checks after are tripwires, not the bound: the estimates share
    runs, steps and one projection, so their errors are correlated and the sample RMS scatters
    around ``sqrt(2 / k)`` (observed 0.10-0.14 here for 0.125); the variance itself is checked
    over independent projections in ``test_the_variance_formula_holds_over_projections``."""
    root, _ = population
    errors = {}
    for step in range(1, helpers.STEPS):
        for layer in ("0", "2", None):
            result = runs.distances(step, layer)
            assert result.rms == pytest.approx(math.sqrt(2 / 128))
            assert result.bound_95 == pytest.approx(math.sqrt(40 / 128))
            exact = helpers.exact_distances(root, result.names, step, layer)
            upper = np.triu_indices(len(exact), 1)
            relative = result.matrix[upper] ** 2 / exact[upper] ** 2 - 1
            errors.setdefault(layer, []).extend(relative.tolist())
            outside = np.abs(relative) > result.bound_95
            assert outside.mean() <= sketches.DELTA, (step, layer, relative[outside])
    for layer, values in errors.items():
        values = np.asarray(values)
        # Unbiased: the mean of many estimates is near 0, within 4 standard errors of the bound.
        assert abs(values.mean()) < 4 * math.sqrt(2 / 128) / math.sqrt(helpers.SEEDS // 2 * (helpers.STEPS - 1))
        assert np.sqrt((values ** 2).mean()) < math.sqrt(2 / 128) * 1.5, layer


def test_the_variance_formula_holds_over_projections(population):
    """For a fixed difference of saved weights, over 400 projections (seeds): the variance of the
    relative squared-distance error is (2/k)(1 - sum x^4 / |x|^4), within the sampling error of a
    variance from 400 draws (4 of its standard errors, sqrt(2/400) relative)."""
    root, _ = population
    x = (helpers.saved_layer(root, "pop/seed00", 5, "2") - helpers.saved_layer(root, "pop/seed01", 5, "2"))
    k = 128
    truth = float((x * x).sum())
    estimates = []
    for draw in range(400):
        seed = f"{draw:016x}"
        sketch = sketches.sketch_reference(x, seed, k)
        estimates.append(float((sketch * sketch).sum()) / truth - 1)
    estimates = np.asarray(estimates)
    predicted = 2 / k * (1 - float((x ** 4).sum()) / truth ** 2)
    assert predicted <= 2 / k
    tolerance = 4 * math.sqrt(2 / 400)
    assert abs(estimates.var() / predicted - 1) < tolerance
    assert abs(estimates.mean()) < 4 * math.sqrt(predicted / 400)


def test_the_whole_model_is_the_root_of_the_layers_squared_distances(runs):
    whole = runs.distances(4).matrix
    layers = sum(runs.distances(4, layer=name).matrix ** 2 for name in helpers.LAYERS)
    np.testing.assert_allclose(whole, np.sqrt(layers), rtol=1e-6, atol=1e-9)


def test_runs_lacking_the_step_or_of_another_architecture_are_left_out(runs):
    last = helpers.STEPS - 1
    result = runs.distances(last)
    assert "pop/short" not in result.names and result.missing == ["pop/short"]
    assert "other/wide" not in result.names + result.missing
    assert result.names == sorted(result.names) and len(result.names) == helpers.SEEDS
    earlier = runs.distances(last - 1)
    assert "pop/short" in earlier.names and earlier.missing == []
    chosen = runs.distances(2, runs=["pop/seed05", "pop/seed01"])
    assert chosen.names == ["pop/seed01", "pop/seed05"] and chosen.matrix.shape == (2, 2)
    assert chosen.matrix[0, 1] == pytest.approx(runs.distances(2).matrix[1, 5], rel=1e-9)
    wide = runs.distances(2, architecture=runs.populations()[1].architecture)
    assert wide.names == ["other/wide"] and wide.matrix.tolist() == [[0.0]]
    with pytest.raises(ValueError, match="several architectures"):
        runs.population(None)
    with pytest.raises(ValueError, match="no run of the population has a sketch at step 99"):
        runs.distances(99)
    with pytest.raises(ValueError, match="layer 'nope'"):
        runs.distances(2, layer="nope")
    with pytest.raises(ValueError, match="not in the population"):
        runs.distances(2, runs=["other/wide"])


def test_distances_keys_are_runs_keys(runs):
    names, matrix = runs.distances(2)
    assert all(name in runs for name in names)
    assert matrix.shape == (len(names), len(names))
    assert np.allclose(matrix, matrix.T) and np.all(np.diag(matrix) == 0)


# ---------------------------------------------------------------- clustering and trajectories


def _upgma_reference(matrix):
    """Slow average linkage: merge the closest pair of clusters by the mean of their members'
    original distances, again and again; a merge lists the cluster with the smaller index first."""
    clusters = [[i] for i in range(len(matrix))]
    trees = [i for i in range(len(matrix))]
    while len(clusters) > 1:
        best = None
        for a in range(len(clusters)):
            for b in range(a + 1, len(clusters)):
                d = np.mean([matrix[i, j] for i in clusters[a] for j in clusters[b]])
                if best is None or d < best[0]:
                    best = (d, a, b)
        _, a, b = best
        first, second = sorted((a, b), key=lambda c: min(clusters[c]))
        merged_tree = (trees[first], trees[second])
        merged = clusters[a] + clusters[b]
        for c in sorted((a, b), reverse=True):
            del clusters[c]
            del trees[c]
        clusters.append(merged)
        trees.append(merged_tree)

    def leaves(tree):
        return [tree] if isinstance(tree, int) else leaves(tree[0]) + leaves(tree[1])

    return leaves(trees[0])


@pytest.mark.parametrize("seed", range(5))
def test_cluster_order_is_average_linkage(seed):
    rng = np.random.default_rng(seed)
    points = np.concatenate([rng.normal(c, 1.0, size=(6, 5)) for c in rng.normal(0, 4, size=(3, 5))])
    points = points[rng.permutation(len(points))]
    matrix = populations.pairwise(points)
    assert populations.cluster_order(matrix) == _upgma_reference(matrix)


def test_cluster_order_puts_separated_groups_together_and_nan_rows_last():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, size=40)
    points = rng.normal(size=(40, 8)) * 0.1 + labels[:, None] * 10.0
    points[7] = np.nan
    order = populations.cluster_order(populations.pairwise(points))
    assert sorted(order) == list(range(40)) and order[-1] == 7
    sequence = [labels[i] for i in order[:-1]]
    assert sum(a != b for a, b in zip(sequence, sequence[1:])) == len(set(labels[np.arange(40) != 7])) - 1


@pytest.mark.parametrize("shape", [(300, 40), (30, 200)])
@pytest.mark.parametrize("exact_limit", [2048, 0])
def test_principal_directions_match_an_svd(shape, exact_limit):
    """The exact paths (covariance or Gram) agree with an SVD to rounding; the iterative path
    (``exact_limit=0``) to its convergence, (s3 / s2) ** 16 on this spectrum (below 1e-8)."""
    rows, width = shape
    rng = np.random.default_rng(3)
    spectrum = np.array([9.0, 6.0] + [2.0] * (min(shape) - 2))
    basis = np.linalg.qr(rng.normal(size=(width, width)))[0][: len(spectrum)]
    data = (rng.normal(size=(rows, len(spectrum))) * spectrum) @ basis
    centred = data - data.mean(axis=0)
    directions, variances = populations.principal_directions(centred, 2, exact_limit)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    tolerance = 1e-9 if exact_limit else (singular[2] / singular[1]) ** 16
    for j in range(2):
        assert abs(float(directions[j] @ vt[j])) > 1 - max(tolerance, 1e-12)
        assert variances[j] == pytest.approx(singular[j] ** 2, rel=max(tolerance, 1e-9))


def test_trajectories_project_every_run_and_step(population, runs):
    result = runs.trajectories()
    assert result.names == _pop_runs()
    assert result.steps.tolist() == list(range(helpers.STEPS))
    assert result.x.shape == (len(result.names), helpers.STEPS)
    short = result.names.index("pop/short")
    assert np.isnan(result.x[short, -1]) and np.isfinite(result.x[short, :-1]).all()
    assert 0 < result.explained[1] <= result.explained[0] <= 1
    # Slow reference: PCA of the pooled sketches by SVD, signs as documented.
    found = runs.populations()[0]
    points, where = [], []
    for i, member in enumerate(found.members):
        rows = member.rows(member.steps).astype(np.float64)
        for j, step in enumerate(member.steps.tolist()):
            points.append(rows[j])
            where.append((i, step))
    points = np.asarray(points)
    centred = points - points.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    coords = centred @ vt[:2].T
    last = [k for k, (_, step) in enumerate(where) if step == helpers.STEPS - 1]
    coords *= np.where(coords[last].mean(axis=0) < 0, -1, 1)
    for k, (i, step) in enumerate(where):
        assert result.x[i, step] == pytest.approx(coords[k, 0], rel=1e-6, abs=1e-9)
        assert result.y[i, step] == pytest.approx(coords[k, 1], rel=1e-6, abs=1e-9)
    total = (centred ** 2).sum()
    assert result.explained[0] == pytest.approx(singular[0] ** 2 / total, rel=1e-9)


def test_a_read_with_a_step_range_keeps_those_steps_in_trajectories(population):
    runs = tb_layerdyn.read(population[1], steps=(1, 3))
    result = runs.trajectories(layer="0", architecture=runs.populations()[0].architecture)
    assert result.steps.tolist() == [1, 2, 3]


def test_a_model_name_keeps_its_own_population(tmp_path):
    model = helpers.mlp()
    ema = nn.Sequential(*[m for m in helpers.mlp()])
    with torch.no_grad():
        LayerDynamics(model, str(tmp_path / "a"), histogram_every=None).log(0)  # first call: a sketch
        tracker = LayerDynamics(ema, str(tmp_path / "a"), histogram_every=None, name="ema")
        tracker.log(0)
        tracker.flush()
    runs = tb_layerdyn.read(str(tmp_path))
    assert [p.model for p in runs.populations()] == [None, "ema"]
    with pytest.raises(ValueError, match="several models"):
        runs.distances(0)
    assert runs.distances(0, model="ema").names == ["a \u00b7 ema"]


@pytest.mark.parametrize("shape", [(9000, 20), (50, 300)])
def test_projection_of_many_points_matches_an_svd(shape):
    """``_project``: the chunked float64 covariance (more points than values, chunks of 4,096
    rows) and the Gram path (fewer), against an SVD of the centred points."""
    rng = np.random.default_rng(4)
    rows, width = shape
    points = (rng.normal(size=(rows, width)) * np.linspace(3, 0.5, width) + 7.0).astype(np.float32)
    coords, variances, total, mean_distance = populations._project(points, 2)
    centred = points.astype(np.float64) - points.astype(np.float64).mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    for j in range(2):
        reference = centred @ vt[j]
        sign = np.sign(reference @ coords[:, j])
        np.testing.assert_allclose(coords[:, j], sign * reference, rtol=1e-6, atol=1e-7)
        assert variances[j] == pytest.approx(singular[j] ** 2, rel=1e-9)
    assert total == pytest.approx((centred ** 2).sum(), rel=1e-9)
    assert mean_distance == pytest.approx(np.sqrt((centred ** 2).sum(axis=1)).mean(), rel=1e-9)
