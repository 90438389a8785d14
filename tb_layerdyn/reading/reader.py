"""Reads logged layer dynamics back into numpy arrays, for notebooks, scripts and tests.

``read(logdir)`` finds every run under a logdir the way TensorBoard names runs, reads every logged
step of each (no sampling, no server) and returns step x layer arrays per metric::

    import tb_layerdyn

    runs = tb_layerdyn.read("runs")
    run = runs["lenet-seed0"]
    run.layers                   # ['conv1', 'conv2', 'fc1', 'fc2', 'fc3'], input -> output
    run.metrics["rwc"]           # (len(run.steps), len(run.layers)) float32, NaN where undefined
    run.groups["late"].metrics["rwc"]   # one value per step, from the group's pooled sums
    runs.to_dataframe()          # long format: run, model, step, layer, metric, value (pandas)
    run.sweeps                   # interpolation sweeps and robustness tables, by step and scope
    run.settling().order         # layers by the step they settle at, as in the tab (``settling``)
    runs.settling()["lenet"]     # a seed group: each run's settling, rho's spread over seeds
    names, matrix = runs.distances(100)        # run x run distances of the weights at step 100
    runs.trajectories().x        # each run's path on the two principal directions of all runs
    run.images["weights"]["fc1"].rgb(-1)   # the last picture of fc1's weights, as the tab draws it

Reading goes through the same on-disk store as the TensorBoard plugin (``store``): the first read
of a run parses its event files once; later reads parse only what was appended since, and take the
arrays from the store's columns. The arrays do not depend on how the events encode them, so the
payload can change between releases without breaking code that reads it. This module imports
neither torch nor the plugin.
"""

import dataclasses
import logging
import re
from typing import Dict, Iterable, List, Mapping, Optional, Tuple, Union

import numpy as np

from tb_layerdyn.reading import files, models, pictures, sweep_index, sweep_records
from tb_layerdyn.reading import populations as population_mod
from tb_layerdyn.reading import settling as settling_rule
from tb_layerdyn.reading.store import Store

logger = logging.getLogger(__name__)

# Between a run's name and its model's name, in the keys of ``Runs`` and in the tab.
MODEL_SEPARATOR = " \u00b7 "


def entry_key(run: str, model: Optional[str]) -> str:
    """The key of a run's model in ``Runs``: the run's name, then `` · model`` for a named one."""
    return run if model is None else f"{run}{MODEL_SEPARATOR}{model}"


@dataclasses.dataclass(frozen=True, eq=False)
class Group:
    """A named group of layers (a block of the model or a user's group) and its metrics.

    Attributes:
        name: the group's name.
        kind: ``"block"`` (a top-level child of the model) or ``"user"`` (named by the user).
        members: the layers it pools, in depth order as logged.
        metrics: metric name -> float array of shape ``(len(steps),)`` computed from the members'
            pooled sums (a group's RWC is sum |dw| / sum |w_prev|, never a mean of ratios).
    """

    name: str
    kind: str
    members: Tuple[str, ...]
    metrics: Mapping[str, np.ndarray]


@dataclasses.dataclass(eq=False, kw_only=True)
class Run:
    """Every logged step of the layer dynamics of one run.

    Fields are keyword-only, so later releases can add fields (for example interpolation sweeps)
    without breaking code that builds or reads a ``Run``.

    Attributes:
        name: the run's directory relative to the logdir, as TensorBoard names it (``"."`` for the
            logdir itself, ``"a/b"`` for a nested one).
        model: the tracker's name when several models were logged into one run (``name=``), else
            ``None``.
        layers: layer names in depth order (input -> output), as logged.
        param_counts: scalar parameters of each layer, aligned with ``layers``.
        steps: ascending int64 array of the logged steps.
        descriptions: per layer a short description (module class and shape, e.g.
            ``"Linear 784→512"``), or ``None`` when the writer did not record them.
        metrics: metric name -> float32 array ``(len(steps), len(layers))``; NaN where a value is
            undefined (e.g. RWC at the first call) or was not logged (a layer absent at that step).
            Names are among ``rwc``, ``rwc_elementwise``, ``distance_from_init``,
            ``relative_distance_from_init``, ``update_size``, ``weight_norm``, ``grad_norm``.
        groups: group name -> ``Group``, in the order logged.
        group_metrics: metric name -> float32 array ``(len(steps), len(groups))``, the same values as
            ``Group.metrics`` side by side.
        rwc_variant: which RWC was logged: ``"l1"`` (the ratio of L1 norms, ``rwc``),
            ``"elementwise"`` (the mean of element-wise ratios, ``rwc_elementwise``) or ``"both"``.
        granularity: ``"layer"`` (a module's parameters together) or ``"parameter"`` (each tensor).
        order: how ``layers`` were ordered: ``"forward"`` (the order modules first ran) or
            ``"registration"``.
        sweeps: the run's interpolation sweeps (``sweep_records.Sweep``, scopes ``"model"``,
            ``"layers"``, ``"parameters"``) and robustness tables
            (``sweep_records.RobustnessTable``), each with its ``step`` and ``scope``, sorted by
            step, then scope in that order. A scope logged twice at one step keeps the one
            written last. A run with sweeps only has no layers and no steps.
        images: the run's pictures (``images_every=N``): kind (``"weights"``, ``"gradients"``,
            ``"updates"``, ``"travel"``, ``"activations"``) -> layer -> ``pictures.PictureSeries``,
            layers in depth order, each with its ``steps``, ``values(i)``, ``rgb(i)`` and
            ``scale``. Kinds are listed, and pictures decoded, only when asked for.
    """

    name: str
    layers: List[str]
    param_counts: List[int]
    steps: np.ndarray
    metrics: Dict[str, np.ndarray]
    groups: Dict[str, Group]
    group_metrics: Dict[str, np.ndarray]
    rwc_variant: Optional[str]
    granularity: Optional[str]
    order: Optional[str]
    sweeps: List[sweep_records.Record] = dataclasses.field(default_factory=list)
    model: Optional[str] = None
    descriptions: Optional[List[str]] = None
    images: Mapping[str, Mapping[str, pictures.PictureSeries]] = dataclasses.field(default_factory=dict)

    def to_dataframe(self, *, groups: bool = False):
        """The run's values in long format, one row per (step, layer, metric).

        Args:
            groups: give the groups' values instead of the layers', with a ``group`` column in
                place of ``layer`` (a group may share its name with a layer, e.g. ResNet's ``fc``).

        Returns:
            A ``pandas.DataFrame`` with columns ``run, model, step, layer, metric, value`` (or
            ``group``), rows ordered by metric, step, then depth. NaN values are kept;
            ``.dropna()`` drops them.

        Raises:
            ImportError: pandas is not installed (it is optional: ``pip install pandas``).
        """
        pd = _import_pandas()
        names = list(self.groups) if groups else self.layers
        tables = self.group_metrics if groups else self.metrics
        column = "group" if groups else "layer"
        frames = []
        for metric, values in tables.items():
            frames.append(
                pd.DataFrame(
                    {
                        "run": self.name,
                        "model": self.model,
                        "step": np.repeat(self.steps, len(names)),
                        column: np.tile(np.asarray(names, dtype=object), len(self.steps)),
                        "metric": metric,
                        "value": values.reshape(-1),
                    }
                )
            )
        if not frames:
            return pd.DataFrame(columns=["run", "model", "step", column, "metric", "value"])
        return pd.concat(frames, ignore_index=True)

    def settling(
        self,
        metric: str = settling_rule.DEFAULT_METRIC,
        fraction: float = settling_rule.DEFAULT_FRACTION,
        *,
        smoothing: float = 0.0,
        key: Optional[str] = None,
    ) -> settling_rule.RunSettling:
        """When each layer settles, by the Layer Dynamics tab's rule, and the rank correlation
        between depth and settling step (see ``tb_layerdyn.reading.settling``).

        Args:
            metric: a logged metric (``rwc`` by default, as in the tab).
            fraction: a layer settles at the first step from which the metric stays below this
                fraction of its own peak, in ``(0, 1]``; 0.1 (10%) by default.
            smoothing: the tab's smoothing weight, in ``[0, 1)``, applied first; 0 (none) by default.
            key: the name to give the result (the run's key in ``Runs``); the run's ``name`` with
                its model by default.

        Returns:
            A ``RunSettling``: ``.layers`` per layer in depth order (``state``, ``step``, ``peak``),
            ``.order`` the settled layers earliest first, ``.correlation`` Spearman's rho (NaN
            when undefined).

        Raises:
            ValueError: ``metric`` was not logged (or not read), or ``fraction``/``smoothing`` is
                out of range.

        Example:
            >>> run.settling("rwc", 0.1).correlation      # doctest: +SKIP
            -0.7
        """
        if metric not in self.metrics:
            raise ValueError(
                f"metric {metric!r} is not among run {entry_key(self.name, self.model)!r}'s "
                f"metrics {sorted(self.metrics)}; pass one of those (or read() it: metrics=...)"
            )
        return settling_rule.settle_run(
            entry_key(self.name, self.model) if key is None else key,
            self.layers, self.steps, self.metrics[metric],
            metric=metric, fraction=fraction, smoothing=smoothing,
        )


class Runs(dict):
    """``entry_key(run, model)`` -> ``Run``, sorted, as ``read`` returns it: the run's name, or
    ``"run · model"`` for each model logged with ``name=`` into one run."""

    _sources = ()
    _steps = (None, None)
    _populations = None

    def populations(self) -> List[population_mod.Population]:
        """The groups of runs whose weight sketches are comparable (``sketches=True``, the
        default): one per tracker name and architecture (the same layers with the same parameter
        counts and sketch sizes), sorted by model, then by decreasing size. Members are named by
        run (see ``reading.populations``); ``distances`` and ``trajectories`` pick one."""
        if self._populations is None:
            self._populations = population_mod.build(self._sources)
        return self._populations

    def population(self, model=..., architecture: Optional[str] = None) -> population_mod.Population:
        """The population of ``model`` (a tracker's ``name=``, ``None`` for unnamed trackers;
        left out: the only model with sketches) and ``architecture`` (left out: the only one of
        that model).

        Raises:
            ValueError: no run has sketches, or the choice is ambiguous or matches none; the
                message lists the populations.
        """
        found = self.populations()
        if not found:
            raise ValueError("no run has weight sketches (log with sketches=True, the default)")
        if model is ...:
            models_ = sorted({p.model for p in found}, key=lambda m: (m is not None, m or ""))
            if len(models_) > 1:
                raise ValueError(f"runs hold sketches of several models {models_}; pass model=")
            model = models_[0]
        chosen = [p for p in found if p.model == model
                  and (architecture is None or p.architecture == architecture)]
        listing = ", ".join(
            f"{p.architecture} (model {p.model!r}, {len(p.members)} runs, layers {p.layers})" for p in found
        )
        if not chosen:
            raise ValueError(f"no population of model {model!r} and architecture {architecture!r}; "
                             f"there are: {listing}")
        if len(chosen) > 1:
            raise ValueError(f"model {model!r} has sketches of several architectures; pass "
                             f"architecture= one of: {listing}")
        return chosen[0]

    def distances(self, step: int, layer: Optional[str] = None, *, model=..., architecture=None,
                  runs: Optional[Iterable[str]] = None) -> population_mod.Distances:
        """The run x run Euclidean distances between the weights at ``step``, estimated from the
        runs' weight sketches: the whole model (the root of the sum of the layers' squared
        distances) or one ``layer``.

        Only the runs of one population are compared (``population``: one tracker name and one
        architecture; other architectures are not comparable). Runs without a sketch at ``step``
        are left out of the matrix and listed in ``.missing``. The estimate of a squared
        distance is unbiased, with a relative standard deviation of at most ``sqrt(2 / k)``
        (``.rms``; 0.125 for the default ``sketch_size=128``) and, for each pair with probability
        95%, a relative error of at most ``sqrt(40 / k)`` (``.bound_95``); layers of at most
        ``k`` parameters are exact (``tb_layerdyn.format.sketches`` derives it).

        Args:
            step: the logged step.
            layer: a layer name, or ``None`` for the whole model.
            model, architecture: which population (see ``population``).
            runs: only these keys of ``Runs`` (all the population's by default).

        Returns:
            A ``Distances``: ``names, matrix = result`` (keys of ``Runs``; float64, NaN for a run
            whose weights were not finite), with ``.order`` (an average-linkage clustering order
            of the matrix), ``.missing``, ``.rms`` and ``.bound_95``.

        Raises:
            ValueError: as ``population``, or ``layer`` is not one of its layers, or no run of
                the choice has a sketch at ``step``.
        """
        found = self.population(model, architecture)
        chosen = self._chosen(found, runs)
        try:
            result = found.distances(int(step), layer, chosen)
        except KeyError as error:
            raise ValueError(error.args[0]) from None
        if not result.names:
            steps = found.steps(found.choose(chosen))
            raise ValueError(f"no run of the population has a sketch at step {step}; they have "
                             f"steps {steps[:5].tolist()} .. {steps[-3:].tolist()}")
        key = found.model
        return dataclasses.replace(
            result, names=[entry_key(n, key) for n in result.names],
            missing=[entry_key(n, key) for n in result.missing],
        )

    def trajectories(self, layer: Optional[str] = None, *, model=..., architecture=None,
                     runs: Optional[Iterable[str]] = None) -> population_mod.Trajectories:
        """Each run's weight sketches over training projected on the two principal directions
        of all the runs' sketches pooled (every run and step, centred): the runs' paths through
        weight space on one plane (the steps ``read(steps=...)`` kept).

        Args:
            layer, model, architecture, runs: as for ``distances``.

        Returns:
            A ``Trajectories``: ``.names``, ``.steps``, ``.x`` and ``.y`` (runs x steps, NaN where
            a run has no sketch), ``.explained`` (the variance fraction of each direction) and
            ``.mean_distance``.
        """
        found = self.population(model, architecture)
        chosen = self._chosen(found, runs)
        try:
            result = found.trajectories(layer, chosen, *self._steps)
        except KeyError as error:
            raise ValueError(error.args[0]) from None
        return dataclasses.replace(result, names=[entry_key(n, found.model) for n in result.names])

    def _chosen(self, found, runs):
        if runs is None:
            return None
        keys = [runs] if isinstance(runs, str) else list(runs)
        by_key = {entry_key(m.run, found.model): m.run for m in found.members}
        unknown = [k for k in keys if k not in by_key]
        if unknown:
            raise ValueError(f"runs {unknown[:5]} are not in the population of model "
                             f"{found.model!r}, architecture {found.architecture}")
        return [by_key[k] for k in keys]

    def to_dataframe(self, *, groups: bool = False):
        """Every run's values in one long-format ``pandas.DataFrame`` (see ``Run.to_dataframe``)."""
        pd = _import_pandas()
        frames = [run.to_dataframe(groups=groups) for run in self.values()]
        if not frames:
            column = "group" if groups else "layer"
            return pd.DataFrame(columns=["run", "model", "step", column, "metric", "value"])
        return pd.concat(frames, ignore_index=True)

    def settling(
        self,
        metric: str = settling_rule.DEFAULT_METRIC,
        fraction: float = settling_rule.DEFAULT_FRACTION,
        *,
        smoothing: float = 0.0,
        seed_pattern: str = settling_rule.SEED_PATTERN,
    ) -> Dict[str, settling_rule.GroupSettling]:
        """Every run's settling (``Run.settling``), taken together by seed group.

        Runs whose keys are equal once ``seed_pattern`` is cut out form a group, as when the tab
        averages over seeds; each group holds its runs' ``RunSettling`` and the mean, standard
        deviation (population), min and max of their rank correlations. Runs without ``metric``
        (a run with sweeps only, say) are left out.

        Args:
            metric, fraction, smoothing: as for ``Run.settling``.
            seed_pattern: a regular expression (case-insensitive) for the seed part of a key; blank
                puts every run in a group of its own.

        Returns:
            group name -> ``GroupSettling`` (``.runs``, ``.correlation.mean``, ``.std``, ``.low``,
            ``.high``, ``.count``), groups in the order of their first run.

        Raises:
            ValueError: no run has ``metric``, or an argument is out of range or no regex.

        Example:
            >>> groups = tb_layerdyn.read("runs").settling()       # doctest: +SKIP
            >>> groups["lenet5"].correlation.mean                   # doctest: +SKIP
        """
        settling_rule.check_fraction(fraction)
        settling_rule.check_smoothing(smoothing)
        settling_rule.compile_seed_pattern(seed_pattern)
        results = [
            run.settling(metric, fraction, smoothing=smoothing, key=key)
            for key, run in self.items()
            if metric in run.metrics
        ]
        if not results and self:
            raise ValueError(
                f"no run has metric {metric!r}; the runs' metrics are "
                f"{sorted({m for run in self.values() for m in run.metrics})}"
            )
        return settling_rule.settle_groups(results, seed_pattern)


def read(
    logdir,
    *,
    runs: Union[None, str, Iterable[str]] = None,
    metrics: Optional[Iterable[str]] = None,
    steps: Optional[Tuple[Optional[int], Optional[int]]] = None,
    cache_dir=None,
) -> Runs:
    """Reads the layer dynamics and sweeps of the runs under a logdir.

    A directory is a run when it holds event files with layer dynamics or sweeps; other
    directories (a plain ``SummaryWriter`` run with only scalars, say) are left out. A truncated
    event file is read up to the cut, as TensorBoard does with a file that is still being written.
    Payloads that cannot be read (written by a newer release, malformed, or another plugin's under
    this one's tags) are skipped with one warning each, naming the run and tag; the rest is read.
    Where one tag repeats a step, or its steps go back (a resumed run), the record read last wins
    and drops the later steps before it, as in TensorBoard (see ``collector``).

    Tables of ``columns.MAP_FROM`` bytes and more are views of the store's files mapped
    copy-on-write (``columns.mapped_rows``): writable, and what is written stays in this process.

    Args:
        logdir: the directory given to ``tensorboard --logdir`` (a ``str``, a path-like, or a URL
            that TensorBoard reads, such as ``s3://...`` or an fsspec ``memory://...``).
        runs: only these runs: an iterable of run names, or a regular expression searched in each
            name. The other runs are neither parsed nor returned.
        metrics: only these metrics (the others are not read from the store).
        steps: ``(first, last)``: only the logged steps in that range, both ends included
            (``None`` for an open end).
        cache_dir: where the store keeps what it read (``store.default_cache_dir()`` by default).

    Returns:
        A ``Runs`` mapping from ``entry_key(run, model)`` (the run's name, ``"."`` for ``logdir``
        itself, ``"a/b"`` for a nested directory, with `` · model`` for named models) to ``Run``,
        sorted.

    Raises:
        FileNotFoundError: ``logdir`` does not exist.
        NotADirectoryError: ``logdir`` is a file, not a directory.
        TypeError, ValueError: an argument is of the wrong kind; the message says which.

    Example:
        >>> runs = tb_layerdyn.read("runs", metrics=["rwc"], steps=(0, 999))   # doctest: +SKIP
        >>> runs["lenet-seed0"].metrics["rwc"].shape                            # doctest: +SKIP
        (1000, 5)
    """
    try:
        root = files.normalize(logdir)
    except TypeError:
        raise TypeError(
            f"logdir must be a directory path (str or os.PathLike) or a URL, got {type(logdir).__name__}"
        ) from None
    if not files.exists(root):
        raise FileNotFoundError(
            f"logdir {root!r} does not exist; pass the directory your SummaryWriter wrote into "
            "(the one you would give to tensorboard --logdir)."
        )
    if not files.isdir(root):
        raise NotADirectoryError(
            f"logdir {root!r} is a file; pass the directory that holds the event files."
        )
    wanted_metrics = _metric_filter(metrics)
    first, last = _step_range(steps)
    store = Store(root, cache_dir)
    found = [name for name in store.discover() if _run_selected(name, runs)]
    store.refresh(found)
    result = {}
    sources = []
    for name in found:
        run_data = store.run(name)
        if run_data is None:
            continue
        sources.append((name, run_data))
        for warning in run_data.warnings:
            logger.warning("%s", warning)
        for entry in _read_run(run_data, wanted_metrics, first, last):
            result[entry_key(entry.name, entry.model)] = entry
    runs_found = Runs(sorted(result.items()))
    runs_found._sources = sources
    runs_found._steps = (first, last)
    return runs_found


def _metric_filter(metrics):
    if metrics is None:
        return None
    if isinstance(metrics, str):
        return {metrics}
    try:
        return set(metrics)
    except TypeError:
        raise TypeError(f"metrics must be an iterable of metric names, got {type(metrics).__name__}") from None


def _step_range(steps):
    if steps is None:
        return None, None
    try:
        first, last = steps
    except (TypeError, ValueError):
        raise ValueError(f"steps must be a (first, last) pair, either None for an open end; got {steps!r}") from None
    for value in (first, last):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
            raise ValueError(f"steps must hold integers or None, got {steps!r}")
    return (None if first is None else int(first)), (None if last is None else int(last))


def _run_selected(name: str, runs) -> bool:
    if runs is None:
        return True
    if isinstance(runs, str):
        return re.search(runs, name) is not None
    return name in set(runs)


def _read_run(run_data, metrics, first, last) -> List[Run]:
    """One ``Run`` per model of a run, sweeps and pictures included."""
    tables = models.model_tables(run_data)
    with_sweeps = sweep_index.models_with_sweeps(run_data)
    with_pictures = pictures.logged_kinds(run_data, first, last)
    facts = pictures.FactsCache()
    entries = []
    for model in sorted(set(tables) | set(with_sweeps) | set(with_pictures), key=lambda m: (m is not None, m or "")):
        table = tables.get(model)
        sweeps = _sweeps(run_data, model, first, last)
        images = pictures.Images(run_data, model, facts, first, last)
        if table is None:
            if not sweeps and not images:
                continue
            entries.append(Run(
                name=run_data.name, model=model, layers=[], param_counts=[],
                steps=np.zeros(0, dtype=np.int64), metrics={}, groups={}, group_metrics={},
                rwc_variant=None, granularity=None, order=None, sweeps=sweeps, images=images,
            ))
            continue
        entries.append(_run_from_table(run_data.name, table, metrics, first, last, sweeps, images))
    return entries


def _run_from_table(name, table, metrics, first, last, sweeps, images) -> Run:
    layer_metrics_, group_metrics, steps = {}, {}, None
    for metric in table.metrics:
        if metrics is not None and metric not in metrics:
            continue
        layers, groups = table.tables(metric, ["layers", "groups"], first, last)
        steps = layers.steps
        layer_metrics_[metric] = layers.values
        group_metrics[metric] = groups.values
    if steps is None:
        all_steps = table.steps
        lo = 0 if first is None else int(np.searchsorted(all_steps, first, side="left"))
        hi = len(all_steps) if last is None else int(np.searchsorted(all_steps, last, side="right"))
        steps = all_steps[lo:hi]
    groups = {}
    for column, group in enumerate(table.groups):
        groups[group.name] = Group(
            name=group.name,
            kind=group.kind,
            members=tuple(group.members),
            metrics={metric: values[:, column] for metric, values in group_metrics.items()},
        )
    return Run(
        name=name,
        model=table.model,
        layers=list(table.layers),
        param_counts=list(table.param_counts),
        descriptions=table.descriptions,
        steps=np.asarray(steps, dtype=np.int64),
        metrics=layer_metrics_,
        groups=groups,
        group_metrics=group_metrics,
        rwc_variant=table.info.get("rwc"),
        granularity=table.info.get("granularity"),
        order=table.info.get("order"),
        sweeps=sweeps,
        images=images,
    )


def _sweeps(run_data, model, first, last) -> List[sweep_records.Record]:
    records = []
    for sweep in sweep_index.logged_sweeps(run_data, model):
        if (first is not None and sweep.step < first) or (last is not None and sweep.step > last):
            continue
        values = sweep_index.values(run_data, sweep)
        if values is not None:
            records.append(sweep_records.from_payload(sweep.step, sweep.layout, values))
    return records


def _import_pandas():
    try:
        import pandas
    except ImportError:
        raise ImportError(
            "to_dataframe() needs pandas, which tb_layerdyn does not install: pip install pandas"
        ) from None
    return pandas
