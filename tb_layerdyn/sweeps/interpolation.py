"""Linear interpolation sweeps between two sets of weights, at three scopes.

For ``theta_alpha = (1 - alpha) * theta0 + alpha * theta1`` (Goodfellow & Vinyals) the sweep
evaluates the model at each alpha and records every metric ``eval_fn`` returns:

``"model"``       all parameters move together: the whole-model cross-section of the loss.
``"layers"``      one layer moves, every other stays at ``theta1``; one curve per layer.
``"parameters"``  one scalar parameter moves, everything else stays at ``theta1``;
                  ``params_per_layer`` scalars per layer, drawn with ``seed``.

Each curve also carries its *travel*, the Euclidean distance ``|theta1 - theta0|`` over what it
moves. Alpha is any real number: values outside [0, 1] extrapolate along the same line.
"""

import functools
import zlib

import numpy as np
import torch

from tb_layerdyn.sweeps.session import SweepSession

SCOPES = ("model", "layers", "parameters")
DEFAULT_ALPHAS = tuple(np.linspace(0.0, 1.0, 21).tolist())
MODEL_CURVE = "model"


class SweepResult:
    """The curves of one sweep.

    Attributes:
        alphas: 1-D float64 array of the interpolation coefficients, in the order given.
        curves: ``{curve name: {metric name: 1-D float64 array over alphas}}``. Curve names are
            ``"model"``, a layer name (``"conv1"``), or a parameter name with the index of the
            scalar (``"conv1.weight[2, 0, 1, 1]"``).
        scopes: ``{scope: [curve names]}`` for the scopes computed, layers in depth order.
        travel: ``{curve name: float}``, the distance between the endpoints over what moved.
        parameters: ``{curve name: {"layer", "parameter", "index"}}`` for the parameter scope.
        metrics: the metric names, in ``eval_fn``'s order.
        end_metrics: ``{metric: float}`` of the model at ``theta1``.
        layers: every layer swept or tested, in depth order.
        robustness: a ``RobustnessResult`` when requested, else ``None``.
    """

    def __init__(self, alphas, metrics, end_metrics, layers):
        self.alphas = np.asarray(alphas, dtype=np.float64)
        self.metrics = list(metrics)
        self.end_metrics = dict(end_metrics)
        self.layers = list(layers)
        self.curves = {}
        self.scopes = {}
        self.travel = {}
        self.parameters = {}
        self.robustness = None

    def add_curve(self, scope, name, points, travel):
        """Stores one curve from a list of per-alpha metric dicts."""
        self.curves[name] = {
            metric: np.array([point[metric] for point in points], dtype=np.float64)
            for metric in self.metrics
        }
        self.scopes.setdefault(scope, []).append(name)
        self.travel[name] = float(travel)

    def __repr__(self):
        counts = ", ".join(f"{scope}: {len(names)}" for scope, names in self.scopes.items())
        return f"SweepResult({len(self.alphas)} alphas; curves {counts}; metrics {self.metrics})"


def interpolation_sweep(
    model,
    eval_fn,
    start,
    end=None,
    *,
    alphas=DEFAULT_ALPHAS,
    scope=("model", "layers"),
    layers=None,
    params_per_layer=4,
    seed=0,
    interpolate_buffers=False,
    reuse_activations=True,
    robustness=False,
    robust_threshold=None,
    label_metric=None,
):
    """Evaluates a model along the straight line between two sets of weights.

    The model is evaluated in eval mode and without gradients. Swept values are written into the
    model's own tensors, so nothing is copied per alpha; afterwards the model is bitwise as before
    (parameters, buffers, train/eval mode of every module, ``requires_grad`` flags, grad mode), also
    when ``eval_fn`` raises. Optimizer state is never touched.

    Example::

        from tb_layerdyn import interpolation_sweep
        from tb_layerdyn.sweeps import make_eval_fn

        eval_fn = make_eval_fn(torch.nn.functional.cross_entropy, [(images, labels)])
        result = interpolation_sweep(model, eval_fn, initial_state, scope=("model", "layers"))
        result.curves["fc1"]["loss"]   # loss at each alpha with only fc1 interpolated

    Args:
        model: a ``torch.nn.Module``.
        eval_fn: ``eval_fn(model) -> {metric: float}``, deterministic, the same names every call;
            ``make_eval_fn`` builds one from a loss function and fixed batches.
        start: ``theta0``: a state dict, a module of the same architecture, or an object with
            ``initial_state_dict()`` (the ``LayerDynamics`` tracker).
        end: ``theta1`` in the same forms; ``None`` (default) for the model's current values.
        alphas: the interpolation coefficients; default 21 points on [0, 1]. Any finite reals.
        scope: one of ``"model"``, ``"layers"``, ``"parameters"``, or a sequence of them.
        layers: layer names to sweep (layer and parameter scopes, robustness); ``None`` for all.
            A layer is a module with parameters of its own; see ``SweepResult.layers``.
        params_per_layer: scalars per layer for the parameter scope (fewer if a layer has fewer).
        seed: seeds the choice of scalars (and the re-randomization draws); the same seed picks
            the same scalars at every training step.
        interpolate_buffers: also interpolate floating-point buffers (BatchNorm running
            statistics) in the model and layer scopes. Off by default: buffers stay at their end
            values, which keeps the evaluation at alpha = 1 equal to the trained model and does not
            depend on running statistics the start point never had. Integer buffers (counters) are
            never interpolated.
        reuse_activations: compute once, for all alphas, every operation the moving tensors
            cannot affect (the forward in front of the swept layer, whether written with modules
            or functional calls, and any other data's branch), and per scalar rebuild the
            operations after it in the changed channels only. Layer and model scopes give the
            same values as without; the parameter scope the same up to float rounding. Turn off
            only to compare.
        robustness: also run ``layer_robustness`` (re-initialization and re-randomization of each
            layer) and attach it as ``result.robustness``.
        robust_threshold: passed to ``layer_robustness`` as ``threshold`` (``None``: its default).
        label_metric: passed to ``layer_robustness``.

    Returns:
        A ``SweepResult``.

    Raises:
        TypeError, ValueError: a bad argument, named in the message; the model is left untouched.
    """
    scopes = _check_scopes(scope)
    alphas = _check_alphas(alphas)
    params_per_layer = _check_count(params_per_layer, "params_per_layer")
    session = SweepSession(
        model,
        eval_fn,
        start,
        end,
        interpolate_buffers=interpolate_buffers,
        # The whole-model sweep has nothing to reuse: no recording for it alone.
        reuse_activations=reuse_activations and scopes != ("model",),
        layer_names=layers,
    )
    with session:
        result = SweepResult(
            alphas, session.metrics, session.end_metrics, [layer.name for layer in session.layers]
        )
        if "model" in scopes:
            _sweep_model(session, result)
        if "layers" in scopes:
            _sweep_layers(session, result)
        if "parameters" in scopes:
            _sweep_parameters(session, result, params_per_layer, seed)
    if robustness:
        from tb_layerdyn.sweeps.robustness import layer_robustness

        options = {} if robust_threshold is None else {"threshold": robust_threshold}
        result.robustness = layer_robustness(
            model,
            eval_fn,
            start,
            end,
            layers=layers,
            seed=seed,
            label_metric=label_metric,
            reuse_activations=reuse_activations,
            **options,
        )
    return result


def _alpha_points(session, result, move, evaluate):
    """Evaluates the model after ``move(alpha)`` at each alpha; alpha = 1 reuses the end model's
    metrics. The caller puts the moved weights back."""
    points = []
    for alpha in result.alphas:
        if alpha == 1.0:
            points.append(session.end_metrics)
            continue
        move(float(alpha))
        points.append(evaluate())
    return points


def _sweep_model(session, result):
    names = session.all_moving()
    try:
        points = _alpha_points(
            session, result, lambda alpha: session.lerp(names, alpha), session.evaluate
        )
    finally:
        session.set_end(names)
    travel = _travel(session.theta0, session.theta1, session.param_names())
    result.add_curve("model", MODEL_CURVE, points, travel)


def _sweep_layers(session, result):
    for layer in session.layers:
        names = session.moving(layer)
        travel = _travel(session.theta0, session.theta1, layer.params)
        if session.still(names):
            # Nothing moves: every alpha evaluates the end model, already evaluated.
            result.add_curve("layers", layer.name, [session.end_metrics] * len(result.alphas), travel)
            continue
        evaluate, close = session.cached(names)
        try:
            points = _alpha_points(
                session, result, functools.partial(session.lerp, names), evaluate
            )
        finally:
            close()
            session.set_end(names)
        result.add_curve("layers", layer.name, points, travel)


def choose_scalars(session, layer, count, seed):
    """Picks ``count`` scalars of a layer's parameters, reproducibly.

    The draw depends only on ``seed``, the layer's name and its parameter shapes, so a sweep at a
    later training step (or of fewer layers) follows the same scalars.

    Returns:
        A list of ``(parameter name, index tuple)`` in the order of the flattened parameters.
    """
    sizes = [session.theta1[name].numel() for name in layer.params]
    total = sum(sizes)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(layer.name.encode()))
    flat = torch.randperm(total, generator=generator)[: min(count, total)].sort().values.tolist()
    chosen = []
    offsets = np.cumsum([0] + sizes)
    for position in flat:
        which = int(np.searchsorted(offsets, position, side="right") - 1)
        name = layer.params[which]
        shape = tuple(session.theta1[name].shape)
        index = tuple(int(i) for i in np.unravel_index(position - offsets[which], shape))
        chosen.append((name, index))
    return chosen


def parameter_curve_name(name, index):
    """The curve name of one scalar: ``"fc1.weight[3, 17]"``."""
    return f"{name}[{', '.join(str(i) for i in index)}]"


def _sweep_parameters(session, result, count, seed):
    for layer in session.layers:
        chosen = choose_scalars(session, layer, count, seed)
        evaluate, rebase, close = session.cached_scalars(layer.params)
        try:
            for name, index in chosen:
                curve = parameter_curve_name(name, index)
                start = session.theta0[name][index]
                end = session.theta1[name][index]
                travel = float((end.double() - start.double()).abs())
                result.parameters[curve] = {
                    "layer": layer.name,
                    "parameter": name,
                    "index": list(index),
                }
                if bool(torch.equal(start, end)) and bool(torch.isfinite(end)):
                    points = [session.end_metrics] * len(result.alphas)
                    result.add_curve("parameters", curve, points, travel)
                    continue
                rebase()
                live = session.live[name]

                def move(alpha, live=live, index=index, start=start, end=end):
                    live[index] = torch.lerp(start, end, alpha)

                try:
                    points = _alpha_points(session, result, move, evaluate)
                finally:
                    session.set_end([name])
                result.add_curve("parameters", curve, points, travel)
        finally:
            close()


def _travel(start, end, names):
    """Euclidean distance between the endpoints over the named tensors, summed in float64."""
    total = 0.0
    for name in names:
        total += float(torch.sum((end[name].double() - start[name].double()) ** 2))
    return total ** 0.5


def _check_scopes(scope):
    scopes = (scope,) if isinstance(scope, str) else tuple(scope)
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ValueError(f"scope must be one of {list(SCOPES)} or a sequence of them, got {scope!r}")
    return scopes


def _check_alphas(alphas):
    try:
        array = np.asarray(alphas, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"alphas must be a sequence of numbers, got {alphas!r}") from None
    if array.size == 0 or not np.all(np.isfinite(array)):
        raise ValueError(f"alphas must be a non-empty sequence of finite numbers, got {alphas!r}")
    return array


def _check_count(value, argument):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{argument} must be a positive integer, got {value!r}")
    return int(value)
