"""Tests of the settling rule, its rank correlation and the seed groups' spread, as ``read()``
returns them (``Run.settling``, ``Runs.settling``).

The curves with known answers in ``fixtures/settling_cases.json`` are the tab's tests' too
(``frontend/test/settling.test.js``), so the two implementations cannot drift apart. Everything
else is checked against plain references written here.
"""

import json
import math
import os
import random
import statistics

import numpy as np
import pytest

import tb_layerdyn
from tb_layerdyn.reading import settling

from conftest import make_layout, write_layer_metrics

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "settling_cases.json")
with open(FIXTURE, encoding="utf-8") as _file:
    CASES = json.load(_file)

_TOKENS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _value(v):
    """A fixture value as a float: ``null`` is a gap (NaN), as in the reader's arrays."""
    if v is None:
        return math.nan
    return _TOKENS[v] if isinstance(v, str) else float(v)


def _columns(case):
    """The case's curves as a ``(steps, layers)`` array."""
    return np.array([[_value(v) for v in layer] for layer in case["values"]]).T


@pytest.mark.parametrize("case", CASES["runs"], ids=[c["name"] for c in CASES["runs"]])
def test_known_answers_shared_with_the_tab(case):
    got = settling.settle_run(
        case["name"], case["layers"], case["steps"], _columns(case),
        fraction=case["fraction"], smoothing=case["smoothing"],
    )
    assert [(s.layer, s.state, s.step) for s in got.layers] == [
        (layer, e["state"], e["step"]) for layer, e in zip(case["layers"], case["expected"])
    ]
    if case["correlation"] is None:
        assert math.isnan(got.correlation)
    else:
        assert got.correlation == pytest.approx(case["correlation"], abs=1e-12)


def test_seed_groups_and_their_spread_shared_with_the_tab():
    runs = [
        settling.RunSettling(
            run=r["name"], metric="rwc", fraction=0.1, smoothing=0.0, layers=(),
            correlation=math.nan if r["correlation"] is None else r["correlation"],
        )
        for r in CASES["groups"]["runs"]
    ]
    groups = settling.settle_groups(runs)
    assert list(groups) == [g["name"] for g in CASES["groups"]["expected"]]
    for want in CASES["groups"]["expected"]:
        got = groups[want["name"]]
        assert [r.run for r in got.runs] == want["runs"]
        assert got.correlation.count == want["count"]
        for key in ("mean", "std", "low", "high"):
            value = getattr(got.correlation, key)
            if want[key] is None:
                assert math.isnan(value), key
            else:
                assert value == pytest.approx(want[key], abs=1e-12), key


def _reference_rule(steps, values, fraction):
    """Brute force: try every step in order; the first with a defined value from which every
    defined value through the end is below the threshold."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return settling.NO_DATA, None
    peak = max(finite)
    if peak <= 0:
        return settling.NEVER_MOVED, None
    for i, v in enumerate(values):
        if math.isfinite(v) and all(not math.isfinite(w) or w < fraction * peak for w in values[i:]):
            return settling.SETTLED, steps[i]
    return settling.NOT_YET, None


def _reference_smooth(values, weight):
    """The debiased moving average written as what it is: at each defined value, the mean of the
    defined values so far, the one ``k`` defined values back weighted by ``weight ** k``."""
    out, seen = [], []
    for v in values:
        if not math.isfinite(v):
            out.append(math.nan)
            continue
        seen.append(v)
        weights = [weight ** (len(seen) - 1 - j) for j in range(len(seen))]
        out.append(sum(w * x for w, x in zip(weights, seen)) / sum(weights))
    return out


def _random_series(rng, n):
    decay = rng.random()
    values = []
    for i in range(n):
        u = rng.random()
        if u < 0.1:
            values.append(math.nan)
        elif u < 0.12:
            values.append(math.inf)
        else:
            values.append(math.exp(-decay * i) * (0.5 + rng.random()))
    return values


def test_random_curves_agree_with_the_brute_force_rule():
    rng = random.Random(5)
    for trial in range(300):
        n = rng.randint(1, 30)
        steps = [3 * i for i in range(n)]
        values = _random_series(rng, n)
        fraction = [0.05, 0.1, 0.3, 1.0][trial % 4]
        state, step, _peak = settling.settling_step(steps, values, fraction)
        assert (state, step) == _reference_rule(steps, values, fraction), trial


def test_smoothing_is_the_debiased_moving_average():
    rng = random.Random(6)
    for weight in (0.0, 0.3, 0.6, 0.95):
        values = _random_series(rng, 40)
        got = settling.smooth(values, weight)
        want = values if weight == 0 else _reference_smooth(values, weight)
        for g, w in zip(got, want):
            assert (math.isnan(g) and not math.isfinite(w)) or g == pytest.approx(w, rel=1e-12)
    with pytest.raises(ValueError, match="smoothing"):
        settling.smooth([1.0], 1.0)


def _reference_spearman(x, y):
    """Spearman's rho from its definition: mean ranks counted by comparison, then Pearson."""

    def ranks(values):
        return [
            1 + sum(w < v for w in values) + (sum(w == v for w in values) - 1) / 2 for v in values
        ]

    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    return cov / math.sqrt(vx * vy)


def test_rank_correlation_against_its_definition_with_ties():
    rng = random.Random(7)
    for _ in range(200):
        n = rng.randint(2, 12)
        x = [rng.randint(0, 5) for _ in range(n)]
        y = [rng.choice([rng.randint(0, 4) * 10, math.inf]) for _ in range(n)]
        if len(set(x)) == 1 or len(set(y)) == 1:
            assert math.isnan(settling.rank_correlation(x, y))
            continue
        assert settling.rank_correlation(x, y) == pytest.approx(_reference_spearman(x, y), abs=1e-12)
    assert math.isnan(settling.rank_correlation([1], [2]))
    assert settling.rank_correlation([0, 1, 2], [5, 9, 30]) == pytest.approx(1)


def test_depth_correlation_counts_not_yet_last_and_leaves_frozen_layers_out():
    rng = random.Random(8)
    states = [settling.SETTLED, settling.NOT_YET, settling.NEVER_MOVED, settling.NO_DATA]
    for _ in range(100):
        layers = []
        for i in range(rng.randint(2, 10)):
            state = rng.choice(states)
            step = rng.randint(0, 6) * 5 if state == settling.SETTLED else None
            layers.append(settling.LayerSettling(f"l{i}", state, step, None))
        kept = [(d, s) for d, s in enumerate(layers) if s.state in (settling.SETTLED, settling.NOT_YET)]
        depth = [d for d, _ in kept]
        # Not yet: after the last settling step there is.
        late = 1 + max([s.step for _, s in kept if s.step is not None], default=0)
        step = [s.step if s.step is not None else late for _, s in kept]
        got = settling.depth_correlation(layers)
        if len(kept) < 2 or len(set(step)) == 1:
            assert math.isnan(got)
        else:
            assert got == pytest.approx(_reference_spearman(depth, step), abs=1e-12)


def test_spread_against_the_statistics_module():
    rng = random.Random(9)
    for _ in range(50):
        values = [rng.uniform(-1, 1) for _ in range(rng.randint(1, 8))]
        with_gaps = values + [math.nan] * rng.randint(0, 3)
        rng.shuffle(with_gaps)
        got = settling.spread(with_gaps)
        assert got.count == len(values)
        assert got.mean == pytest.approx(statistics.fmean(values), abs=1e-12)
        assert got.std == pytest.approx(statistics.pstdev(values), abs=1e-12)
        assert (got.low, got.high) == (min(values), max(values))
    assert settling.spread([math.nan]).count == 0


def test_seed_pattern_groups_as_the_tab_does():
    names = ["lenet5-seed0", "mlp_seed0", "lenet5-seed1", "lenet/seed2", "lenet/seed10", "baseline", "Seed3"]
    assert settling.group_by_seed(names) == {
        "lenet5": ["lenet5-seed0", "lenet5-seed1"],
        "mlp": ["mlp_seed0"],
        "lenet": ["lenet/seed2", "lenet/seed10"],
        "baseline": ["baseline"],
        # The pattern would leave nothing: the run keeps its name.
        "Seed3": ["Seed3"],
    }
    assert settling.group_by_seed(["a-seed0", "a-seed1"], " ") == {"a-seed0": ["a-seed0"], "a-seed1": ["a-seed1"]}
    assert settling.group_by_seed(["x_rep1", "x_rep2"], r"_rep\d") == {"x": ["x_rep1", "x_rep2"]}
    with pytest.raises(ValueError, match="seed_pattern"):
        settling.group_by_seed(["a"], "seed(")


LAYERS = ["conv1", "conv2", "fc1", "fc2"]
STEPS = list(range(0, 100, 10))


def _logged_run(run_dir, settle_at, stuck=()):
    """Writes a run whose RWC of layer ``i`` is 1 until ``settle_at[i]`` and 0.01 from then on
    (``stuck`` layers stay at 1; NaN at step 0, as logged); returns nothing."""
    layout = make_layout(LAYERS)
    values = np.full((len(STEPS), len(layout["metrics"]), len(LAYERS)), 0.5, dtype=np.float32)
    rwc = layout["metrics"].index("rwc")
    for i, at in enumerate(settle_at):
        column = np.where(np.asarray(STEPS) < at, 1.0, 0.01)
        if LAYERS[i] in stuck:
            column[:] = 1.0
        values[:, rwc, i] = column
    values[0, rwc, :] = np.nan
    write_layer_metrics(run_dir, layout, STEPS, values)


def test_read_returns_each_runs_settling_and_each_groups_spread(tmp_path):
    # Seed 0: input first (rho 1); seed 1: output first (rho -1); seed 2: conv1 not yet, the rest
    # output first (rho -1, not yet ranking last).
    _logged_run(str(tmp_path / "net" / "seed0"), [20, 40, 60, 80])
    _logged_run(str(tmp_path / "net" / "seed1"), [80, 60, 40, 20])
    _logged_run(str(tmp_path / "net" / "seed2"), [0, 70, 50, 30], stuck=("conv1",))
    _logged_run(str(tmp_path / "other"), [20, 20, 60, 60])
    runs = tb_layerdyn.read(str(tmp_path))

    first = runs["net/seed0"].settling()
    assert first.run == "net/seed0" and first.metric == "rwc" and first.fraction == 0.1
    assert first.steps == {"conv1": 20, "conv2": 40, "fc1": 60, "fc2": 80}
    assert first.order == LAYERS and first.correlation == pytest.approx(1)
    stuck = runs["net/seed2"].settling()
    assert stuck.in_state(settling.NOT_YET) == ["conv1"]
    assert stuck.order == ["fc2", "fc1", "conv2"]
    assert stuck.correlation == pytest.approx(-1)
    assert runs["other"].settling().correlation == pytest.approx(_reference_spearman([0, 1, 2, 3], [20, 20, 60, 60]))
    # A threshold below the settled level: no layer gets under it.
    assert runs["net/seed0"].settling(fraction=0.005).in_state(settling.NOT_YET) == LAYERS

    groups = runs.settling()
    assert list(groups) == ["net", "other"]
    net = groups["net"]
    assert [r.run for r in net.runs] == ["net/seed0", "net/seed1", "net/seed2"]
    correlations = [runs[k].settling().correlation for k in ("net/seed0", "net/seed1", "net/seed2")]
    assert net.correlation.mean == pytest.approx(statistics.fmean(correlations))
    assert net.correlation.std == pytest.approx(statistics.pstdev(correlations))
    assert (net.correlation.low, net.correlation.high, net.correlation.count) == (
        pytest.approx(-1), pytest.approx(1), 3,
    )
    assert [len(g.runs) for g in runs.settling(seed_pattern="").values()] == [1, 1, 1, 1]


def test_settling_of_another_metric_and_with_smoothing(tmp_path):
    _logged_run(str(tmp_path / "a"), [20, 40, 60, 80])
    run = tb_layerdyn.read(str(tmp_path))["a"]
    # Every other metric is 0.5 throughout: never below 10% of its peak.
    assert run.settling("update_size").in_state(settling.NOT_YET) == LAYERS
    smoothed = run.settling(smoothing=0.5)
    want = [
        _reference_rule(list(run.steps), _reference_smooth(list(run.metrics["rwc"][:, i].astype(float)), 0.5), 0.1)
        for i in range(len(LAYERS))
    ]
    assert [(s.state, s.step) for s in smoothed.layers] == want
    assert smoothed.steps["conv1"] > 20


def test_bad_arguments_say_what_to_pass(tmp_path):
    _logged_run(str(tmp_path / "a"), [20, 40, 60, 80])
    runs = tb_layerdyn.read(str(tmp_path), metrics=["rwc"])
    run = runs["a"]
    with pytest.raises(ValueError, match="'weight_norm' is not among run 'a'.*read\\(\\) it"):
        run.settling("weight_norm")
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        run.settling(fraction=0)
    with pytest.raises(TypeError, match="fraction must be a number"):
        run.settling(fraction="10%")
    with pytest.raises(ValueError, match=r"smoothing must be in \[0, 1\)"):
        runs.settling(smoothing=1)
    with pytest.raises(ValueError, match="no run has metric 'grad_norm'"):
        runs.settling("grad_norm")
    with pytest.raises(ValueError, match="seed_pattern 'seed\\(' is not a valid"):
        runs.settling(seed_pattern="seed(")
