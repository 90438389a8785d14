"""Which layers matter: re-initialization and re-randomization, one layer at a time.

After Zhang, Bengio & Singer ("Are all layers created equal?"): with every other layer at its end
weights, one layer is

* **re-initialized**: put back to its start weights ``theta0``;
* **re-randomized**: given a fresh draw from its own initializer (its module's
  ``reset_parameters()``, seeded), i.e. weights it never trained from.

Each is reported as the change of every metric from the end model. A layer is labelled **robust**
when re-initializing it changes ``label_metric`` by more than ``threshold`` (absolute), and
**ambient** otherwise: the model does not need what that layer learnt. (This follows the naming of
Nemcova's study of LeNet-5; Zhang et al. call the former layers *critical* and use *robust* for
the layers that survive the reset.) The default, accuracy changing by more than 0.02, is two
percentage points: larger than the noise of a few thousand evaluation samples, far smaller than the
drop of a layer the network depends on. Raise it to flag only layers whose reset ruins the model.
"""

import contextlib
import zlib

import numpy as np
import torch

from tb_layerdyn.format import sweeps as encoding
from tb_layerdyn.sweeps.session import SweepSession

DEFAULT_THRESHOLD = 0.02


class RobustnessResult:
    """Per layer, the metrics after re-initialization and re-randomization.

    Attributes:
        layers: layer names in depth order.
        metrics: metric names.
        end_metrics: ``{metric: float}`` of the end model.
        reinitialized: ``{metric: array over layers}`` with that layer at ``theta0``.
        rerandomized: ``{metric: array over layers}`` with that layer freshly drawn; NaN for a
            layer whose module has no ``reset_parameters()`` (listed in ``not_rerandomizable``).
        not_rerandomizable: layer names that could not be re-randomized.
        threshold: the labelling threshold (absolute change of ``label_metric``).
        label_metric: the metric the labels are based on.
    """

    def __init__(self, layers, metrics, end_metrics, threshold, label_metric):
        self.layers = list(layers)
        self.metrics = list(metrics)
        self.end_metrics = dict(end_metrics)
        self.threshold = float(threshold)
        self.label_metric = label_metric
        self.reinitialized = {m: np.full(len(layers), np.nan) for m in self.metrics}
        self.rerandomized = {m: np.full(len(layers), np.nan) for m in self.metrics}
        self.not_rerandomizable = []

    def change(self, condition):
        """``{metric: array over layers}``: the metric under ``condition`` minus its end value."""
        values = {"reinitialized": self.reinitialized, "rerandomized": self.rerandomized}[condition]
        return {m: values[m] - self.end_metrics[m] for m in self.metrics}

    @property
    def labels(self):
        """``"robust"``, ``"ambient"`` or ``"undefined"`` (NaN change) per layer."""
        return encoding.labels(self.change("reinitialized")[self.label_metric], self.threshold)

    def __repr__(self):
        pairs = ", ".join(f"{n}: {label}" for n, label in zip(self.layers, self.labels))
        return f"RobustnessResult({pairs})"


def layer_robustness(
    model,
    eval_fn,
    start,
    end=None,
    *,
    layers=None,
    seed=0,
    threshold=DEFAULT_THRESHOLD,
    label_metric=None,
    reuse_activations=True,
):
    """Re-initializes and re-randomizes each layer in turn and measures the damage.

    Buffers (BatchNorm running statistics) stay at their end values in both tests. The model is
    restored bitwise afterwards, as with ``interpolation_sweep``, and the global random state is
    left as it was.

    Args:
        model, eval_fn, start, end, layers, reuse_activations: as for ``interpolation_sweep``.
        seed: seeds each layer's re-randomization (combined with the layer name).
        threshold: absolute change of ``label_metric`` above which a layer is robust.
        label_metric: the metric the labels use; ``None`` picks ``"accuracy"`` when ``eval_fn``
            reports it, else its first metric.

    Returns:
        A ``RobustnessResult``.
    """
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be a non-negative number, got {threshold!r}") from None
    if not threshold >= 0:
        raise ValueError(f"threshold must be a non-negative number, got {threshold!r}")
    session = SweepSession(
        model, eval_fn, start, end, reuse_activations=reuse_activations, layer_names=layers
    )
    with session:
        if label_metric is None:
            label_metric = "accuracy" if "accuracy" in session.metrics else session.metrics[0]
        elif label_metric not in session.metrics:
            raise ValueError(
                f"label_metric {label_metric!r} is not among eval_fn's metrics {session.metrics}"
            )
        result = RobustnessResult(
            [layer.name for layer in session.layers],
            session.metrics,
            session.end_metrics,
            threshold,
            label_metric,
        )
        for position, layer in enumerate(session.layers):
            _test_layer(session, result, position, layer, seed)
    return result


def _test_layer(session, result, position, layer, seed):
    names = list(layer.params)
    # The re-randomization may also reset the layer's buffers (BatchNorm's reset_parameters
    # does); they are put back to their end values before evaluating.
    touched = names + [name for name, _ in _own_buffers(session, layer)]
    evaluate, close = session.cached(names)
    try:
        session.lerp(names, 0.0)
        _store(result.reinitialized, position, evaluate())
        session.set_end(touched)
        reset = getattr(layer.module, "reset_parameters", None)
        if not callable(reset):
            result.not_rerandomizable.append(layer.name)
            return
        with _seeded(seed, layer.name, session):
            reset()
        session.set_end([name for name in touched if name not in names])
        _store(result.rerandomized, position, evaluate())
    finally:
        close()
        session.set_end(touched)


def _own_buffers(session, layer):
    prefix = "" if layer.module is session.model else layer.name + "."
    return [
        (prefix + name, buffer)
        for name, buffer in layer.module.named_buffers(recurse=False)
        if prefix + name in session.live
    ]


def _store(table, position, metrics):
    for name, value in metrics.items():
        table[name][position] = value


@contextlib.contextmanager
def _seeded(seed, layer_name, session):
    devices = sorted(
        {t.device.index or 0 for t in session.live.values() if t.device.type == "cuda"}
    )
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed * 1_000_003 + zlib.crc32(layer_name.encode()))
        yield
