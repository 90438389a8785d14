"""Reads logged layer dynamics back into numpy arrays, for notebooks, scripts and tests.

``read(logdir)`` finds every run under a logdir the way TensorBoard names runs, reads every logged
step of each (no sampling, no server) and returns step x layer arrays per metric::

    import tb_layerdyn

    runs = tb_layerdyn.read("runs")
    run = runs["lenet-seed0"]
    run.layers                   # ['conv1', 'conv2', 'fc1', 'fc2', 'fc3'], input -> output
    run.metrics["rwc"]           # (len(run.steps), len(run.layers)) floats, NaN where undefined
    run.groups["late"].metrics["rwc"]   # one value per step, from the group's pooled sums
    runs.to_dataframe()          # long format: run, step, layer, metric, value (needs pandas)
    run.sweeps                   # interpolation sweeps and robustness tables, by step and scope

The arrays do not depend on how the events encode them, so the payload can change between releases
without breaking code that reads it. This module imports neither torch nor the plugin.
"""

import dataclasses
import logging
import math
import os
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np
from google.protobuf import message
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.proto import types_pb2
from tensorboard.util import tensor_util

from tb_layerdyn.format import framing as event_records
from tb_layerdyn.format import envelope as metadata
from tb_layerdyn.format import layer_metrics
from tb_layerdyn.reading import sweep_records
from tb_layerdyn.reading import table
from tb_layerdyn.format import sweeps as encoding

logger = logging.getLogger(__name__)
_warned_versions = set()


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
        layers: layer names in depth order (input -> output), as logged.
        param_counts: scalar parameters of each layer, aligned with ``layers``.
        steps: ascending int64 array of the logged steps.
        metrics: metric name -> float array ``(len(steps), len(layers))``; NaN where a value is
            undefined (e.g. RWC at the first call) or was not logged (a layer absent at that step).
            Names are among ``rwc``, ``rwc_elementwise``, ``distance_from_init``,
            ``relative_distance_from_init``, ``update_size``, ``weight_norm``, ``grad_norm``.
        groups: group name -> ``Group``, in the order logged.
        group_metrics: metric name -> float array ``(len(steps), len(groups))``, the same values as
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

    def to_dataframe(self, *, groups: bool = False):
        """The run's values in long format, one row per (step, layer, metric).

        Args:
            groups: give the groups' values instead of the layers', with a ``group`` column in
                place of ``layer`` (a group may share its name with a layer, e.g. ResNet's ``fc``).

        Returns:
            A ``pandas.DataFrame`` with columns ``run, step, layer, metric, value`` (or ``group``),
            rows ordered by metric, step, then depth. NaN values are kept; ``.dropna()`` drops them.

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
                        "step": np.repeat(self.steps, len(names)),
                        column: np.tile(np.asarray(names, dtype=object), len(self.steps)),
                        "metric": metric,
                        "value": values.reshape(-1),
                    }
                )
            )
        if not frames:
            return pd.DataFrame(columns=["run", "step", column, "metric", "value"])
        return pd.concat(frames, ignore_index=True)


class Runs(dict):
    """Run name -> ``Run``, sorted by name, as ``read`` returns it."""

    def to_dataframe(self, *, groups: bool = False):
        """Every run's values in one long-format ``pandas.DataFrame`` (see ``Run.to_dataframe``)."""
        pd = _import_pandas()
        frames = [run.to_dataframe(groups=groups) for run in self.values()]
        if not frames:
            column = "group" if groups else "layer"
            return pd.DataFrame(columns=["run", "step", column, "metric", "value"])
        return pd.concat(frames, ignore_index=True)


def read(logdir) -> Runs:
    """Reads the layer dynamics and sweeps of every run under a logdir.

    Every event file of every directory under ``logdir`` is read in full. A directory is a run when
    it holds event files with layer dynamics or sweeps; other directories (a plain
    ``SummaryWriter`` run with only scalars, say) are left out. A truncated event file is read up
    to the cut, as TensorBoard does with a file that is still being written. Payloads written by a
    newer release of this package are skipped with one warning.

    Args:
        logdir: the directory given to ``tensorboard --logdir`` (a ``str`` or path-like).

    Returns:
        A ``Runs`` mapping from run name (``"."`` for ``logdir`` itself, ``"a/b"`` for a nested
        directory) to ``Run``, sorted by name.

    Raises:
        FileNotFoundError: ``logdir`` does not exist.
        NotADirectoryError: ``logdir`` is a file, not a directory.

    Example:
        >>> runs = tb_layerdyn.read("runs")                       # doctest: +SKIP
        >>> runs["lenet-seed0"].metrics["rwc"].shape              # doctest: +SKIP
        (1000, 5)
    """
    try:
        root = os.fspath(logdir)
    except TypeError:
        raise TypeError(
            f"logdir must be a directory path (str or os.PathLike), got {type(logdir).__name__}"
        ) from None
    if not os.path.exists(root):
        raise FileNotFoundError(
            f"logdir {root!r} does not exist; pass the directory your SummaryWriter wrote into "
            "(the one you would give to tensorboard --logdir)."
        )
    if not os.path.isdir(root):
        raise NotADirectoryError(
            f"logdir {root!r} is a file; pass the directory that holds the event files."
        )
    runs = Runs()
    found = []
    for directory, subdirectories, filenames in os.walk(root):
        subdirectories.sort()
        # TensorBoard's own test for an event file.
        event_files = sorted(name for name in filenames if "tfevents" in name)
        if event_files:
            found.append((directory, [os.path.join(directory, name) for name in event_files]))
    for directory, paths in found:
        name = _run_name(root, directory)
        run = _read_run(name, paths)
        if run is not None:
            runs[name] = run
    return Runs(sorted(runs.items()))


def _run_name(root: str, directory: str) -> str:
    relative = os.path.relpath(directory, root)
    return relative.replace(os.sep, "/")


def _read_run(name: str, paths: List[str]) -> Optional[Run]:
    """Reads one run's event files (in name order, as TensorBoard does) into a ``Run``."""
    contents: Dict[str, Optional[dict]] = {}
    events: Dict[str, List[Tuple[int, np.ndarray]]] = {}
    sweeps = _SweepEvents()
    for path in paths:
        try:
            records = event_records.read_records(path)
        except OSError as error:
            logger.warning(
                "Cannot read event file %s (%s); reading the run's other files.", path, error
            )
            continue
        for record in records:
            _collect(record, contents, events, sweeps, path)
    layouts = []
    for tag, tag_events in events.items():
        content = contents.get(tag)
        if content is None:
            continue
        expected = (len(content["metrics"]), len(content["layers"]) + len(content["groups"]))
        fitting = [(step, values) for step, values in tag_events if values.shape == expected]
        if len(fitting) < len(tag_events):
            logger.warning(
                "Run %r, tag %s: skipped %d events whose tensor is not %s as its layout says.",
                name,
                tag,
                len(tag_events) - len(fitting),
                expected,
            )
        steps, values = table.stack_events(fitting)
        if len(steps):
            layouts.append(table.LayoutEvents(content=content, steps=steps, values=values))
    logged_sweeps = sweeps.records(name)
    if not layouts:
        if not logged_sweeps:
            return None
        return Run(
            name=name,
            layers=[],
            param_counts=[],
            steps=np.zeros(0, dtype=np.int64),
            metrics={},
            groups={},
            group_metrics={},
            rwc_variant=None,
            granularity=None,
            order=None,
            sweeps=logged_sweeps,
        )
    merged = table.build_run_table(layouts)
    groups = {}
    for column, group in enumerate(merged.groups):
        groups[group["name"]] = Group(
            name=group["name"],
            kind=group.get("kind", "user"),
            members=tuple(group["members"]),
            metrics={metric: values[:, column] for metric, values in merged.group_metrics.items()},
        )
    return Run(
        name=name,
        layers=list(merged.layers),
        param_counts=list(merged.param_counts),
        steps=merged.steps,
        metrics=merged.metrics,
        groups=groups,
        group_metrics=merged.group_metrics,
        rwc_variant=merged.info.get("rwc"),
        granularity=merged.info.get("granularity"),
        order=merged.info.get("order"),
        sweeps=logged_sweeps,
    )


def _collect(
    record: bytes,
    contents: Dict[str, Optional[dict]],
    events: Dict[str, List[Tuple[int, np.ndarray]]],
    sweeps: "_SweepEvents",
    path: str,
) -> None:
    """Adds the layer-metrics values of one serialized event to ``events``, by tag, and its sweep
    payloads to ``sweeps``.

    A tag's layout comes with its first event in each file only, so layouts are kept per tag for
    the whole run (the first one seen wins, as in TensorBoard's loaders) and events are matched to
    them after every file is read.
    """
    try:
        event = event_pb2.Event.FromString(record)
    except message.DecodeError:
        logger.warning("Event file %s holds an event that does not parse; skipping it.", path)
        return
    if not event.HasField("summary"):
        return
    for value in event.summary.value:
        tag = value.tag
        if tag.startswith(encoding.TAG_PREFIX):
            sweeps.add(event, value)
            continue
        if not tag.startswith(layer_metrics.TAG_PREFIX) or tag.endswith(layer_metrics.STEPS_SUFFIX):
            continue
        if tag not in contents and value.HasField("metadata"):
            contents[tag] = _layout(value.metadata)
        if tag in contents and contents[tag] is None:
            continue  # a layout this release cannot read: its events would be dropped anyway
        array = _decode(value.tensor)
        if array is not None and array.ndim == 3:
            # Several calls packed into one event, their steps in a sibling value.
            steps = [
                v for v in event.summary.value if v.tag == tag + layer_metrics.STEPS_SUFFIX
            ]
            if steps:
                steps = tensor_util.make_ndarray(steps[0].tensor).astype(np.int64).tolist()
                if len(steps) == len(array):
                    events.setdefault(tag, []).extend(zip(steps, array))
        elif array is not None:
            events.setdefault(tag, []).append((event.step, array))


class _SweepEvents:
    """The sweep payloads of one run, collected in the order written."""

    def __init__(self):
        self._layouts: Dict[str, Optional[dict]] = {}  # tag -> layout (first one seen wins)
        self._events: List[Tuple[str, int, float, np.ndarray]] = []

    def add(self, event, value) -> None:
        """Keeps one summary value of a sweep tag, with its event's step and wall time."""
        tag = value.tag
        if tag not in self._layouts and value.HasField("metadata"):
            try:
                self._layouts[tag] = encoding.parse_layout(
                    metadata.parse_content(value.metadata, encoding.KIND, encoding.VERSION)
                )
            except metadata.FormatError:
                self._layouts[tag] = None
        if tag in self._layouts and self._layouts[tag] is None:
            return
        array = _decode(value.tensor)
        if array is not None:
            self._events.append((tag, event.step, event.wall_time, array))

    def records(self, run_name: str) -> List[sweep_records.Record]:
        """One record per (step, scope), the latest written (wall time, then file order) kept."""
        latest = {}
        skipped = 0
        for position, (tag, step, wall_time, array) in enumerate(self._events):
            layout = self._layouts.get(tag)
            if layout is None:
                continue
            if array.shape != encoding.expected_shape(layout):
                skipped += 1
                continue
            key = (step, layout["scope"])
            if key not in latest or (wall_time, position) > latest[key][0]:
                latest[key] = ((wall_time, position), layout, array)
        if skipped:
            logger.warning(
                "Run %r: skipped %d sweep events whose tensor does not fit its layout.",
                run_name,
                skipped,
            )
        order = encoding.INTERPOLATION_SCOPES + (encoding.ROBUSTNESS_SCOPE,)
        return [
            sweep_records.from_payload(step, layout, array)
            for (step, scope), (_, layout, array) in sorted(
                latest.items(), key=lambda item: (item[0][0], order.index(item[0][1]))
            )
        ]


def _layout(summary_metadata) -> Optional[dict]:
    """The layout dict of a metrics tag, or ``None`` when it is not one this release reads."""
    try:
        content = metadata.parse_content(summary_metadata, layer_metrics.KIND, layer_metrics.VERSION)
        layer_metrics.parse_layout(content)
    except metadata.NewerVersionError as error:
        if error.version not in _warned_versions:
            _warned_versions.add(error.version)
            logger.warning("Skipping layer dynamics: %s.", error)
        return None
    except metadata.FormatError:
        return None
    if not all(key in content for key in ("metrics", "layers", "param_counts", "groups")):
        return None
    return content


def _decode(tensor) -> Optional[np.ndarray]:
    """The float32 array of a tensor proto; the packed bytes are viewed, not parsed per value."""
    if tensor.dtype != types_pb2.DT_FLOAT:
        return None
    shape = tuple(dim.size for dim in tensor.tensor_shape.dim)
    content = tensor.tensor_content
    if content:
        flat = np.frombuffer(content, dtype="<f4")
        if flat.size != math.prod(shape):
            return None
        return flat.reshape(shape)
    return tensor_util.make_ndarray(tensor).astype(np.float32, copy=False)


def _import_pandas():
    try:
        import pandas
    except ImportError:
        raise ImportError(
            "to_dataframe() needs pandas, which tb_layerdyn does not install: pip install pandas"
        ) from None
    return pandas
