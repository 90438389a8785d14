"""The Layer Dynamics TensorBoard plugin: its routes, as written up in ``http_api.md``.

Each route is two halves: ``*_route`` parses the request and raises
``errors.InvalidArgumentError`` (400) for a bad parameter; ``*_impl`` does the work and raises
``errors.NotFoundError`` (404) for an unknown run or metric. TensorBoard turns both into plain-text
answers, so no bad request ends in a 500.
"""

from tensorboard import errors
from tensorboard import plugin_util
from tensorboard.plugins import base_plugin
from werkzeug import wrappers

from tb_layerdyn.format import envelope as metadata
from tb_layerdyn.format import sweeps as encoding
from tb_layerdyn.plugin import params
from tb_layerdyn.plugin import payloads
from tb_layerdyn.plugin import responses
from tb_layerdyn.plugin import runs_data
from tb_layerdyn.plugin import static
from tb_layerdyn.plugin import sweeps_data

DEFAULT_MAX_POINTS = 10000
MAX_MAX_POINTS = 100000
DEFAULT_MAX_STEPS = 2000
MAX_MAX_STEPS = 20000
MAX_STEP = 2**63 - 1  # event steps are int64


def _request_scope(request):
    """The data provider's ``ctx`` and experiment id of a request."""
    return plugin_util.context(request.environ), plugin_util.experiment_id(request.environ)


def _respond_json(request, body):
    return responses.json_response(request, payloads.to_json(body))


class LayerDynamicsPlugin(base_plugin.TBPlugin):
    """Serves per-layer training dynamics to the Layer Dynamics tab."""

    plugin_name = metadata.PLUGIN_NAME

    def __init__(self, context, static_dir=static.STATIC_DIR):
        """Creates the plugin.

        Args:
            context: the ``base_plugin.TBContext``; only its ``data_provider`` is read.
            static_dir: where the frontend bundle lies (the package's ``static/`` by default).
        """
        self._data = runs_data.RunsData(context.data_provider)
        self._sweeps = sweeps_data.SweepsData(context.data_provider)
        self._static_dir = static_dir

    def get_plugin_apps(self):
        """Route -> WSGI app, relative to ``/data/plugin/layer_dynamics``."""
        apps = {
            "/runs": self.runs_route,
            "/series": self.series_route,
            "/heatmap": self.heatmap_route,
            "/summary": self.summary_route,
            "/sweeps": self.sweeps_route,
            "/sweep": self.sweep_route,
        }
        apps.update(static.static_apps(self._static_dir))
        return apps

    def is_active(self):
        """Always ``False``: TensorBoard activates the tab from ``data_plugin_names`` instead."""
        return False

    def data_plugin_names(self):
        """The plugin name the writer puts on its summaries."""
        return (metadata.PLUGIN_NAME,)

    def frontend_metadata(self):
        """Tells TensorBoard to load ``index.js`` as an ES module for the tab."""
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="Layer Dynamics")

    # runs

    @wrappers.Request.application
    def runs_route(self, request):
        ctx, experiment_id = _request_scope(request)
        return _respond_json(request, self.runs_impl(ctx, experiment_id))

    def runs_impl(self, ctx, experiment_id):
        """The body of ``runs``: every run with per-layer metrics or sweeps, sorted by name."""
        layouts = self._data.list_layouts(ctx, experiment_id)
        sweep_counts = self._sweeps.counts(ctx, experiment_id)
        entries = []
        for run in sorted(set(layouts) | set(sweep_counts)):
            infos = layouts.get(run)
            sweeps = sweep_counts.get(run, 0)
            run_table = None
            if infos and len(infos) > 1:
                # Several layouts: only the merged table knows the order that joins them.
                run_table = self._data.run_table(ctx, experiment_id, run, infos)
            if run_table is not None:
                last_step = max(info.max_step for info in infos)
                entry = payloads.run_entry(
                    run, run_table=run_table, last_step=last_step, sweeps=sweeps
                )
            elif infos and len(infos) == 1:
                last_step = infos[0].max_step
                entry = payloads.run_entry(
                    run, content=infos[0].content, last_step=last_step, sweeps=sweeps
                )
            elif sweeps:
                entry = payloads.run_entry(run, sweeps=sweeps)
            else:
                continue
            entries.append(entry)
        return {"runs": entries}

    # series

    @wrappers.Request.application
    def series_route(self, request):
        ctx, experiment_id = _request_scope(request)
        run = params.required(request, "run")
        metric = params.required(request, "metric")
        target = params.choice(request, "target", payloads.TARGETS, "layers")
        max_points = params.integer(request, "max_points", DEFAULT_MAX_POINTS, 2, MAX_MAX_POINTS)
        body = self.series_impl(ctx, experiment_id, run, metric, target, max_points)
        return _respond_json(request, body)

    def series_impl(self, ctx, experiment_id, run, metric, target, max_points):
        """The body of ``series``: one metric of one run against step, as columns."""
        run_table = self._metric_table(ctx, experiment_id, run, metric)
        return payloads.series(run, run_table, metric, target, max_points)

    # heatmap

    @wrappers.Request.application
    def heatmap_route(self, request):
        ctx, experiment_id = _request_scope(request)
        run = params.required(request, "run")
        metric = params.required(request, "metric")
        target = params.choice(request, "target", payloads.TARGETS, "layers")
        max_steps = params.integer(request, "max_steps", DEFAULT_MAX_STEPS, 1, MAX_MAX_STEPS)
        body = self.heatmap_impl(ctx, experiment_id, run, metric, target, max_steps)
        return _respond_json(request, body)

    def heatmap_impl(self, ctx, experiment_id, run, metric, target, max_steps):
        """The body of ``heatmap``: a series x step grid, bin means beyond ``max_steps``."""
        run_table = self._metric_table(ctx, experiment_id, run, metric)
        return payloads.heatmap(run, run_table, metric, target, max_steps)

    # summary

    @wrappers.Request.application
    def summary_route(self, request):
        ctx, experiment_id = _request_scope(request)
        run = params.required(request, "run")
        return _respond_json(request, self.summary_impl(ctx, experiment_id, run))

    def summary_impl(self, ctx, experiment_id, run):
        """The body of ``summary``: per layer and group, latest values at the last step."""
        return payloads.summary(run, self._run_table(ctx, experiment_id, run))

    # sweeps

    @wrappers.Request.application
    def sweeps_route(self, request):
        ctx, experiment_id = _request_scope(request)
        run = params.required(request, "run")
        return _respond_json(request, self.sweeps_impl(ctx, experiment_id, run))

    def sweeps_impl(self, ctx, experiment_id, run):
        """The body of ``sweeps``: every sweep of a run by step and scope (empty when none)."""
        sweeps = self._sweeps.sweeps(ctx, experiment_id, run)
        if not sweeps and not self._data.list_layouts(ctx, experiment_id, run):
            raise errors.NotFoundError(f"run {run!r} has neither layer dynamics nor sweeps")
        return payloads.sweep_listing(run, sweeps)

    @wrappers.Request.application
    def sweep_route(self, request):
        ctx, experiment_id = _request_scope(request)
        run = params.required(request, "run")
        step = params.required_integer(request, "step", 0, MAX_STEP)
        scope = params.required_choice(request, "scope", sweeps_data.SCOPES)
        threshold = params.number(request, "threshold", None, 0.0)
        if threshold is not None and scope != encoding.ROBUSTNESS_SCOPE:
            raise errors.InvalidArgumentError(
                f"query parameter 'threshold' applies to scope={encoding.ROBUSTNESS_SCOPE} only; "
                f"leave it out for scope={scope}"
            )
        body = self.sweep_impl(ctx, experiment_id, run, step, scope, threshold)
        return _respond_json(request, body)

    def sweep_impl(self, ctx, experiment_id, run, step, scope, threshold=None):
        """The body of ``sweep``: one sweep's curves, or a robustness table (relabelled with
        ``threshold`` when given)."""
        sweeps = self._sweeps.sweeps(ctx, experiment_id, run)
        for found in sweeps:
            if found.step == step and found.scope == scope:
                return payloads.sweep(run, found, threshold)
        if not sweeps:
            raise errors.NotFoundError(f"run {run!r} has no sweeps")
        steps = sorted({s.step for s in sweeps if s.scope == scope})
        where = f"at steps {', '.join(map(str, steps))}" if steps else "at no step"
        raise errors.NotFoundError(
            f"run {run!r} has no {scope} sweep at step {step}; it has one {where}"
        )

    # shared lookups

    def _run_table(self, ctx, experiment_id, run):
        run_table = self._data.run_table(ctx, experiment_id, run)
        if run_table is None:
            raise errors.NotFoundError(f"run {run!r} has no layer dynamics")
        return run_table

    def _metric_table(self, ctx, experiment_id, run, metric):
        run_table = self._run_table(ctx, experiment_id, run)
        if metric not in run_table.metrics:
            raise errors.NotFoundError(
                f"metric {metric!r} was not logged for run {run!r}; it has "
                f"{', '.join(payloads.sorted_metrics(run_table.metrics))}"
            )
        return run_table
