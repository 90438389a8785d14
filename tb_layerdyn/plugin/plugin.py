"""The Layer Dynamics TensorBoard plugin: its routes, as written up in ``http_api.md``.

Each route is two halves: ``*_route`` parses the request and raises
``errors.InvalidArgumentError`` (400) for a bad parameter; ``*_impl`` does the work and raises
``errors.NotFoundError`` (404) for an unknown run, model, metric, sweep or picture. TensorBoard turns both
into plain-text answers, so no bad request ends in a 500. Data comes from ``data.PluginData``, the
on-disk store shared with ``tb_layerdyn.read``.
"""

import os
import threading

import numpy as np
from tensorboard import errors
from tensorboard.backend import http_util
from tensorboard.plugins import base_plugin
from werkzeug import wrappers

from tb_layerdyn.format import envelope
from tb_layerdyn.format import pictures as picture_format
from tb_layerdyn.format import sweeps as encoding
from tb_layerdyn.plugin import data as plugin_data
from tb_layerdyn.plugin import params, payloads, population, responses, static
from tb_layerdyn.reading import models, pictures, sweep_index

DEFAULT_MAX_POINTS = 10000
MAX_MAX_POINTS = 100000
DEFAULT_MAX_STEPS = 2000
MAX_MAX_STEPS = 20000
MAX_STEP = 2**63 - 1  # event steps are int64
FORMATS = ("json", "binary")
# Most entries one ``series_batch`` request may ask for.
MAX_BATCH = 256
# Curves computed at once, and heatmaps, two of each per core: TensorBoard serves each request on
# its own thread, and the tab asks for ten batches of curves and a dozen heatmaps at once; computed
# all together they hold their temporaries (several times an answer's bytes) at once and finish no
# sooner. Curves and heatmaps take separate turns, so that heatmaps never hold up the chart; one
# turn per core saves more memory but slows a metric switch (README, "Reading and the tab").
# (The cores this process may run on, where the system says: a container's share, not the host's.)
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
CONCURRENT_TABLES = 2 * max(1, _CORES)


def _respond_json(request, body):
    return responses.json_response(request, payloads.to_json(body))


class LayerDynamicsPlugin(base_plugin.TBPlugin):
    """Serves per-layer training dynamics to the Layer Dynamics tab."""

    plugin_name = envelope.PLUGIN_NAME

    def __init__(self, context, static_dir=static.STATIC_DIR, cache_dir=None):
        """Creates the plugin.

        Args:
            context: the ``base_plugin.TBContext``; its ``flags`` say which logdir to serve and
                how often to look for new data.
            static_dir: where the frontend bundle lies (the package's ``static/`` by default).
            cache_dir: where the store lives (``reading.store.default_cache_dir()`` by default).
        """
        self._data = plugin_data.PluginData(context.flags, cache_dir)
        self._pictures = pictures.Listings()
        self._populations = population.Populations(self._data)
        self._static_dir = static_dir
        self._computing = threading.BoundedSemaphore(CONCURRENT_TABLES)
        self._computing_heatmaps = threading.BoundedSemaphore(CONCURRENT_TABLES)

    def get_plugin_apps(self):
        """Route -> WSGI app, relative to ``/data/plugin/layer_dynamics``."""
        apps = {
            "/runs": self.runs_route,
            "/series": self.series_route,
            "/series_batch": self.series_batch_route,
            "/heatmap": self.heatmap_route,
            "/summary": self.summary_route,
            "/sweeps": self.sweeps_route,
            "/sweep": self.sweep_route,
            "/pictures": self.pictures_route,
            "/frame": self.frame_route,
            "/sketches": self.sketches_route,
            "/distances": self.distances_route,
            "/trajectories": self.trajectories_route,
        }
        apps.update(static.static_apps(self._static_dir))
        return apps

    def is_active(self):
        """Whether any run has data: asked when the data provider does not list the plugin."""
        return bool(self._data.entries())

    def data_plugin_names(self):
        """The plugin name the writer puts on its summaries."""
        return (envelope.PLUGIN_NAME,)

    def frontend_metadata(self):
        """Tells TensorBoard to load ``index.js`` as an ES module for the tab."""
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="Layer Dynamics")

    # runs

    @wrappers.Request.application
    def runs_route(self, request):
        return _respond_json(request, self.runs_impl())

    def runs_impl(self):
        """The body of ``runs``: every run's models with layer metrics or sweeps, sorted."""
        self._data.refresh_for_request()
        entries = []
        for entry in self._data.entries():
            found = self._data.find(entry.run, entry.model)
            kinds = pictures.logged_kinds(found[0]).get(entry.model, []) if found else []
            entries.append(payloads.run_entry(entry, kinds))
        return {"runs": entries, "loading": self._data.loading}

    # series

    @wrappers.Request.application
    def series_route(self, request):
        run, model = params.required(request, "run"), params.optional(request, "model")
        metric = params.required(request, "metric")
        target = params.choice(request, "target", models.TARGETS, "layers")
        max_points = params.integer(request, "max_points", DEFAULT_MAX_POINTS, 2, MAX_MAX_POINTS)
        start, end = _step_range(request)
        encoding_format = params.choice(request, "format", FORMATS, "json")
        with self._computing:
            entry, found = self.series_impl(run, model, metric, target, max_points, start, end)
            total = entry.table.num_steps
            if encoding_format == "binary":
                body = payloads.series_binary(entry, found, metric, target, total)
                return http_util.Respond(request, body, "application/octet-stream")
            body = payloads.series(entry, found, metric, target, total)
        return _respond_json(request, body)

    def series_impl(self, run, model, metric, target, max_points, start=None, end=None):
        """One metric of one model against step over ``[start, end]``: an ``Entry`` and the
        ``models.Series`` of at most ``max_points`` points."""
        entry = self._metric_entry(run, model, metric)
        return entry, entry.table.series(metric, target, max_points // 2, start, end)

    @wrappers.Request.application
    def series_batch_route(self, request):
        runs = request.args.getlist("run")
        names = request.args.getlist("model")
        if not runs:
            raise errors.InvalidArgumentError("query parameter 'run' is required (once per entry)")
        if len(runs) > MAX_BATCH:
            raise errors.InvalidArgumentError(f"at most {MAX_BATCH} entries a request; got {len(runs)}")
        if any(run == "" for run in runs):
            raise errors.InvalidArgumentError("query parameter 'run' is empty")
        if names and len(names) != len(runs):
            raise errors.InvalidArgumentError(
                f"query parameter 'model' must be given once per 'run' ({len(runs)} times) or not at all; "
                f"got {len(names)}"
            )
        names = [m or None for m in names] if names else [None] * len(runs)
        metric = params.required(request, "metric")
        target = params.choice(request, "target", models.TARGETS, "layers")
        max_points = params.integer(request, "max_points", DEFAULT_MAX_POINTS, 2, MAX_MAX_POINTS)
        start, end = _step_range(request)
        body = self.series_batch_impl(list(zip(runs, names)), metric, target, max_points, start, end)
        return http_util.Respond(request, body, "application/octet-stream")

    def series_batch_impl(self, entries, metric, target, max_points, start=None, end=None):
        """The binary ``series`` answers of several ``(run, model)`` entries, in their order, in
        one body: a ``uint32`` count, then per entry a ``uint32`` length and that many bytes."""
        parts = []
        for run, model in entries:
            # One entry at a time holds a turn, so concurrent batches take turns entry by entry.
            with self._computing:
                entry, found = self.series_impl(run, model, metric, target, max_points, start, end)
                parts.append(payloads.series_binary_pieces(entry, found, metric, target, entry.table.num_steps))
        return payloads.concatenated(parts)

    # heatmap

    @wrappers.Request.application
    def heatmap_route(self, request):
        run, model = params.required(request, "run"), params.optional(request, "model")
        metric = params.required(request, "metric")
        target = params.choice(request, "target", models.TARGETS, "layers")
        max_steps = params.integer(request, "max_steps", DEFAULT_MAX_STEPS, 1, MAX_MAX_STEPS)
        start, end = _step_range(request)
        encoding_format = params.choice(request, "format", FORMATS, "json")
        with self._computing_heatmaps:
            entry = self._metric_entry(run, model, metric)
            found = entry.table.heatmap(metric, target, max_steps, start, end)
            if encoding_format == "binary":
                body = payloads.heatmap_binary(entry, found, metric, target)
                return http_util.Respond(request, body, "application/octet-stream")
            body = payloads.heatmap(entry, found, metric, target)
        return _respond_json(request, body)

    # summary

    @wrappers.Request.application
    def summary_route(self, request):
        run, model = params.required(request, "run"), params.optional(request, "model")
        return _respond_json(request, self.summary_impl(run, model))

    def summary_impl(self, run, model=None):
        """The body of ``summary``: per layer and group, latest values at the last step."""
        entry = self._entry(run, model)
        table = entry.table
        latest = {
            (target, metric): table.latest(metric, target)
            for metric in payloads.SUMMARY_METRICS
            if metric in table.metrics
            for target in models.TARGETS
        }
        return payloads.summary(entry, latest)

    # sweeps

    @wrappers.Request.application
    def sweeps_route(self, request):
        run, model = params.required(request, "run"), params.optional(request, "model")
        return _respond_json(request, self.sweeps_impl(run, model))

    def sweeps_impl(self, run, model=None):
        """The body of ``sweeps``: every sweep of a run's model by step and scope."""
        run_data, table = self._lookup(run, model)
        sweeps = sweep_index.logged_sweeps(run_data, model)
        if not sweeps and table is None:
            raise errors.NotFoundError(_unknown(run, model, "has neither layer dynamics nor sweeps"))
        return payloads.sweep_listing(plugin_data.Entry(run, model, table, len(sweeps)), sweeps)

    @wrappers.Request.application
    def sweep_route(self, request):
        run, model = params.required(request, "run"), params.optional(request, "model")
        step = params.required_integer(request, "step", 0, MAX_STEP)
        scope = params.required_choice(request, "scope", sweep_index.SCOPES)
        threshold = params.number(request, "threshold", None, 0.0)
        if threshold is not None and scope != encoding.ROBUSTNESS_SCOPE:
            raise errors.InvalidArgumentError(
                f"query parameter 'threshold' applies to scope={encoding.ROBUSTNESS_SCOPE} only; "
                f"leave it out for scope={scope}"
            )
        return _respond_json(request, self.sweep_impl(run, model, step, scope, threshold))

    def sweep_impl(self, run, model, step, scope, threshold=None):
        """The body of ``sweep``: one sweep's curves, or a robustness table (relabelled with
        ``threshold`` when given)."""
        run_data, table = self._lookup(run, model)
        sweeps = sweep_index.logged_sweeps(run_data, model)
        for found in sweeps:
            if found.step == step and found.scope == scope:
                values = sweep_index.values(run_data, found)
                if values is None:
                    raise errors.NotFoundError(
                        f"the {scope} sweep of run {run!r} at step {step} can no longer be read "
                        "from its event file"
                    )
                return payloads.sweep(plugin_data.Entry(run, model, table, 0), found, values, threshold)
        if not sweeps:
            raise errors.NotFoundError(_unknown(run, model, "has no sweeps"))
        steps = sorted({s.step for s in sweeps if s.scope == scope})
        where = f"at steps {', '.join(map(str, steps))}" if steps else "at no step"
        raise errors.NotFoundError(
            f"{_name(run, model)} has no {scope} sweep at step {step}; it has one {where}"
        )

    # pictures

    @wrappers.Request.application
    def pictures_route(self, request):
        run, model = params.required(request, "run"), params.optional(request, "model")
        return _respond_json(request, self.pictures_impl(run, model))

    def pictures_impl(self, run, model=None):
        """The body of ``pictures``: per kind, the steps and layers of a run's model's pictures."""
        run_data, table = self._lookup(run, model)
        listings = self._pictures.model_pictures(run, run_data, model)
        if not listings and table is None and not sweep_index.logged_sweeps(run_data, model):
            raise errors.NotFoundError(_unknown(run, model, "has neither layer dynamics nor pictures"))
        return payloads.picture_listing(run, model, listings)

    @wrappers.Request.application
    def frame_route(self, request):
        run, model = params.required(request, "run"), params.optional(request, "model")
        kind = params.required_choice(request, "kind", picture_format.PICTURES)
        step = params.required_integer(request, "step", 0, MAX_STEP)
        return http_util.Respond(request, self.frame_impl(run, model, kind, step), "application/octet-stream")

    def frame_impl(self, run, model, kind, step):
        """The body of ``frame``: every layer's picture of one kind at one step, as bytes."""
        run_data, _ = self._lookup(run, model)
        listed = self._pictures.model_pictures(run, run_data, model).get(kind)
        if listed is None:
            raise errors.NotFoundError(_unknown(run, model, f"has no {kind} pictures"))
        row = int(np.searchsorted(listed.steps, step))
        if row == len(listed.steps) or listed.steps[row] != step:
            raise errors.NotFoundError(
                f"{_name(run, model)} has no {kind} picture at step {step}; it has them at "
                f"{_some_steps(listed.steps)}"
            )
        found = listed.frame(run_data, row)
        if found is None:
            raise errors.NotFoundError(
                f"the {kind} pictures of {_name(run, model)} at step {step} can no longer be read "
                "from their event file"
            )
        return payloads.picture_frame(run, model, listed, row, found)

    # distances between runs (population.py)

    @wrappers.Request.application
    def sketches_route(self, request):
        model = params.optional(request, "model")
        return _respond_json(request, self.sketches_impl(model, "model" in request.args))

    def sketches_impl(self, model=None, filtered=False):
        """The body of ``sketches``: every population (of ``model`` when ``filtered``)."""
        self._data.refresh_for_request()
        return population.listing(self._populations.all(), model, filtered, self._data.loading)

    @wrappers.Request.application
    def distances_route(self, request):
        model, architecture, layer, runs = population.query(request)
        step = population.step_param(request)
        order = params.choice(request, "order", population.ORDERS, "cluster")
        encoding_format = params.choice(request, "format", FORMATS, "json")
        header, matrix = self.distances_impl(step, model, architecture, layer, runs, order)
        if encoding_format == "binary":
            body = population.binary(header, len(matrix), [matrix])
            return http_util.Respond(request, body, "application/octet-stream")
        return _respond_json(request, population.distances_json(header, matrix))

    def distances_impl(self, step, model=None, architecture=None, layer=None, runs=None, order="cluster"):
        """The header and matrix of ``distances``: run x run distances at ``step``."""
        found = self._populations.pick(model, architecture)
        members = population.chosen(found, layer, runs)
        return population.distances(found, step, layer, members, order)

    @wrappers.Request.application
    def trajectories_route(self, request):
        model, architecture, layer, runs = population.query(request)
        encoding_format = params.choice(request, "format", FORMATS, "json")
        header, x, y = self.trajectories_impl(model, architecture, layer, runs)
        if encoding_format == "binary":
            body = population.binary(header, len(header["steps"]), [x, y])
            return http_util.Respond(request, body, "application/octet-stream")
        return _respond_json(request, population.trajectories_json(header, x, y))

    def trajectories_impl(self, model=None, architecture=None, layer=None, runs=None):
        """The header and coordinates of ``trajectories``."""
        found = self._populations.pick(model, architecture)
        members = population.chosen(found, layer, runs)
        return population.trajectories(found, layer, members)

    # shared lookups

    def _lookup(self, run, model):
        found = self._data.find(run, model)
        if found is None:
            raise errors.NotFoundError(f"run {run!r} has no layer dynamics")
        return found

    def _entry(self, run, model):
        run_data, table = self._lookup(run, model)
        if table is None:
            raise errors.NotFoundError(_unknown(run, model, "has no layer dynamics"))
        return plugin_data.Entry(run, model, table, 0)

    def _metric_entry(self, run, model, metric):
        entry = self._entry(run, model)
        if metric not in entry.table.metrics:
            raise errors.NotFoundError(
                f"metric {metric!r} was not logged for {_name(run, model)}; it has "
                f"{', '.join(payloads.sorted_metrics(entry.table.metrics))}"
            )
        return entry


def _name(run, model):
    return f"run {run!r}" if model is None else f"model {model!r} of run {run!r}"


def _unknown(run, model, what):
    return f"{_name(run, model)} {what}"


def _some_steps(steps, shown=8):
    """``"steps 0, 10, …, 90 (10 steps)"``: a few of some steps, for a message."""
    values = [str(s) for s in steps.tolist()]
    if len(values) > shown:
        values = values[: shown // 2] + ["…"] + values[-(shown // 2):]
    return f"steps {', '.join(values)} ({len(steps)} steps)"


def _step_range(request):
    """The optional ``start`` and ``end`` steps of a request (both included)."""
    start = params.integer(request, "start", None, 0, MAX_STEP)
    end = params.integer(request, "end", None, 0, MAX_STEP)
    if start is not None and end is not None and end < start:
        raise errors.InvalidArgumentError(
            f"query parameter 'end' ({end}) must not be below 'start' ({start})"
        )
    return start, end
