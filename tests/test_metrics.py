"""Every metric, per layer and per group, against a slow reference written plainly here."""

import math

import numpy as np
import pytest
import torch
from torch.utils.tensorboard import SummaryWriter

from layerdyn_helpers import ZOO_LAYERS, Zoo, train_step, values_by_step, zoo_batch
from tb_layerdyn import LayerDynamics
from tb_layerdyn.tracking import metrics

GROUPS = {"early": ["conv", "bn"], "late": "block|head"}
GROUP_MEMBERS = {
    "block": ["block.0", "block.1"],
    "early": ["conv", "bn"],
    "late": ["block.0", "block.1", "head"],
}


def flat_weights(model, names):
    params = dict(model.named_parameters(remove_duplicate=False))
    return [params[name].detach().double().flatten().clone() for name in names]


def flat_grads(model, names):
    params = dict(model.named_parameters(remove_duplicate=False))
    return [None if params[n].grad is None else params[n].grad.double().flatten() for n in names]


def reference(now, prev, init, grads):
    """Metrics of one layer or group from lists of per-parameter 1-D float64 tensors."""
    w = torch.cat(now)
    w0 = torch.cat(init)
    out = {
        "distance_from_init": math.sqrt(sum((a - b) ** 2 for a, b in zip(w.tolist(), w0.tolist()))),
        "weight_norm": math.sqrt(sum(a * a for a in w.tolist())),
    }
    init_norm = math.sqrt(sum(a * a for a in w0.tolist()))
    out["relative_distance_from_init"] = out["distance_from_init"] / init_norm if init_norm else math.nan
    if prev is None:
        out.update(rwc=math.nan, rwc_elementwise=math.nan, update_size=math.nan)
    else:
        p = torch.cat(prev).tolist()
        diffs = [a - b for a, b in zip(w.tolist(), p)]
        l1_prev = sum(abs(b) for b in p)
        out["rwc"] = sum(abs(d) for d in diffs) / l1_prev if l1_prev else math.nan
        ratios = [abs(d) / abs(b) for d, b in zip(diffs, p) if b != 0]
        out["rwc_elementwise"] = sum(ratios) / len(ratios) if ratios else math.nan
        out["update_size"] = math.sqrt(sum(d * d for d in diffs))
    present = [g for g in grads if g is not None]
    out["grad_norm"] = math.sqrt(sum(float((g * g).sum()) for g in present)) if present else math.nan
    return out


def check(logged, expected, what):
    if math.isnan(expected):
        assert math.isnan(logged), f"{what}: expected undefined (NaN), logged {logged}"
    else:
        assert logged == pytest.approx(expected, rel=2e-5, abs=1e-7), what


@pytest.mark.parametrize("log_every", [1, 2])
def test_every_metric_and_group_matches_reference(tmp_path, log_every):
    torch.manual_seed(0)
    model = Zoo()
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    gen = torch.Generator().manual_seed(1)
    writer = SummaryWriter(str(tmp_path))
    tracker = LayerDynamics(model, writer, rwc="both", groups=GROUPS, histogram_every=None)
    columns = dict(ZOO_LAYERS)
    for group, members in GROUP_MEMBERS.items():
        columns[group] = [name for member in members for name in ZOO_LAYERS[member]]
    init = {col: flat_weights(model, names) for col, names in columns.items()}
    prev = None
    expected = {}
    for step in range(6):
        train_step(model, opt, zoo_batch(gen))
        if step % log_every:
            continue
        tracker.log(step)
        now = {col: flat_weights(model, names) for col, names in columns.items()}
        if prev is None:
            init = now
        expected[step] = {
            col: reference(now[col], None if prev is None else prev[col], init[col],
                           flat_grads(model, names))
            for col, names in columns.items()
        }
        prev = now
    writer.close()

    logged = values_by_step(str(tmp_path))
    assert sorted(logged) == sorted(expected)
    for step, per_column in expected.items():
        for column, values in per_column.items():
            for metric, value in values.items():
                check(logged[step][(metric, column)], value, f"step {step} {metric} {column}")
    # Frozen layers are measured: they do not move, and have no gradient.
    assert logged[2][("rwc", "frozen")] == 0.0
    assert math.isnan(logged[2][("grad_norm", "frozen")])


def test_group_rwc_is_ratio_of_sums_not_mean_of_ratios():
    # Two layers: one barely moves with large weights, one moves a lot with small weights.
    sums = np.zeros((2, metrics.NUM_SUMS))
    sums[:, metrics.SUM_ABS_DIFF] = [1.0, 1.0]
    sums[:, metrics.SUM_ABS_PREV] = [100.0, 1.0]
    sums[:, metrics.SUM_NUMEL] = [10, 10]
    group = metrics.group_sums(sums, [[0, 1]])
    values = metrics.compute(group, has_previous=[True], has_grad=[False], rwc="l1")
    assert values[0, 0] == pytest.approx(2.0 / 101.0)
    assert values[0, 0] != pytest.approx((1 / 100 + 1 / 1) / 2)


def test_undefined_values_are_nan():
    sums = np.zeros((3, metrics.NUM_SUMS))
    sums[:, metrics.SUM_NUMEL] = 4
    sums[0, metrics.SUM_ZERO_PREV] = 4  # every previous weight of column 0 is zero
    sums[1, metrics.SUM_ABS_PREV] = 2.0
    sums[2, metrics.SUM_SQ_WEIGHT] = math.inf
    values = metrics.compute(
        sums, has_previous=[True, False, True], has_grad=[False, True, True], rwc="both"
    )
    names = metrics.metric_names("both")
    row = dict(zip(names, values))
    assert math.isnan(row["rwc"][0])  # previous weights all zero
    assert math.isnan(row["rwc_elementwise"][0])
    assert math.isnan(row["rwc"][1]) and math.isnan(row["update_size"][1])  # first call
    assert row["distance_from_init"][1] == 0.0
    assert math.isnan(row["grad_norm"][0]) and row["grad_norm"][1] == 0.0
    assert np.isnan(values[:, 2]).all()  # Inf in the weights: the whole column


def test_metric_names_reject_unknown_variant():
    with pytest.raises(ValueError, match="rwc"):
        metrics.metric_names("l2")


def test_steady_state_math_equals_the_masked_math_bit_for_bit():
    """``compute_defined`` (the training loop's common case, no masks) gives exactly the values of
    the general masked computation, and declines when a denominator is zero."""
    rng = np.random.default_rng(0)
    sums = rng.uniform(1e-6, 1e3, size=(40, metrics.NUM_SUMS))
    fast = metrics.compute_defined(sums)
    # rwc="both" never takes the fast path: its l1 rows are the masked computation's.
    masked = metrics.compute(sums, has_previous=[True] * 40, has_grad=[True] * 40, rwc="both")
    names = metrics.metric_names("both")
    l1_rows = [names.index(name) for name in metrics.metric_names("l1")]
    assert np.array_equal(fast, masked[l1_rows])
    sums[7, metrics.SUM_ABS_PREV] = 0.0
    assert metrics.compute_defined(sums) is None
    assert np.isnan(metrics.compute(sums, has_previous=[True] * 40, has_grad=[True] * 40)[0, 7])
