"""Reads layer dynamics through TensorBoard's data provider and keeps each run's merged table.

Everything the plugin serves comes from ``context.data_provider`` (``list_tensors`` and
``read_tensors``), so it works the same under the Rust data server and the Python multiplexer.
Merging a run's layouts into step x layer tables is ``tb_layerdyn.reading.table``'s job; this module only
finds the layouts, reads their events and caches the result.

A run's table is rebuilt only when one of its tags has new data: the cache key holds each tag's
``max_step`` and ``max_wall_time``, which TensorBoard reports without reading the events.
"""

import collections
import dataclasses
import threading
from typing import Dict, List, Optional

import numpy as np
from tensorboard.data import provider

from tb_layerdyn.format import envelope as metadata
from tb_layerdyn.format import layer_metrics
from tensorboard.compat.proto import summary_pb2
from tb_layerdyn.reading import table

# ``read_tensors`` requires an explicit sample count. The loaders keep every step of this plugin
# (see ``loader.py``), so ask for more points than any tag can hold to get all of them back.
READ_ALL = 2**31 - 1

# Cached tables are stored as float32 (the precision they were logged in): 20 runs of 100 layers,
# 5,000 steps and 7 metrics take about 300 MB. Least recently used runs go first beyond this.
DEFAULT_CACHE_BYTES = 512 * 2**20

_LAYOUT_KEYS = ("metrics", "layers", "param_counts", "groups")


@dataclasses.dataclass(frozen=True)
class TagInfo:
    """What ``list_tensors`` says about one layout tag, without reading its events."""

    tag: str
    content: dict
    max_step: int
    max_wall_time: float


def _layout_content(plugin_content):
    """The layout dict of a per-layer metrics tag, or ``None`` when it is not one this reads."""
    summary_metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=metadata.PLUGIN_NAME, content=plugin_content
        )
    )
    try:
        content = metadata.parse_content(summary_metadata, layer_metrics.KIND, layer_metrics.VERSION)
        layer_metrics.parse_layout(content)
    except metadata.FormatError:
        return None
    if not all(isinstance(content.get(key), list) for key in _LAYOUT_KEYS):
        return None
    if len(content["param_counts"]) != len(content["layers"]):
        return None
    return content


def table_nbytes(run_table):
    """Bytes held by the arrays of a ``RunTable``."""
    arrays = [run_table.steps, *run_table.metrics.values(), *run_table.group_metrics.values()]
    return sum(array.nbytes for array in arrays)


def _as_float32(run_table):
    """The same table with float32 value arrays, halving what the cache holds."""
    return dataclasses.replace(
        run_table,
        metrics={k: v.astype(np.float32) for k, v in run_table.metrics.items()},
        group_metrics={k: v.astype(np.float32) for k, v in run_table.group_metrics.items()},
    )


def single_layout_table(layout):
    """The ``RunTable`` of a run with one layout, as float32 slices of its events.

    Equal to ``_as_float32(table.build_run_table([layout]))``, without the general merge: with a
    single layout every column already sits where the merge would put it, and skipping it saves
    about a third of a cold request on 100 layers x 5,000 steps.
    """
    content = layout.content
    num_layers = len(content["layers"])
    values = np.asarray(layout.values, dtype=np.float32)
    return table.RunTable(
        layers=list(content["layers"]),
        param_counts=[int(n) for n in content["param_counts"]],
        groups=list(content["groups"]),
        steps=np.asarray(layout.steps, dtype=np.int64),
        metrics={
            metric: np.ascontiguousarray(values[:, m, :num_layers])
            for m, metric in enumerate(content["metrics"])
        },
        group_metrics={
            metric: np.ascontiguousarray(values[:, m, num_layers:])
            for m, metric in enumerate(content["metrics"])
        },
        info={key: content[key] for key in ("rwc", "granularity", "order", "model", "descriptions") if key in content},
    )


def list_tags(data_provider, ctx, experiment_id, run, prefix, parse_layout):
    """The tags under ``prefix`` of each run that has any, with their parsed layouts.

    Args:
        data_provider: the TensorBoard context's data provider.
        ctx: the request's ``RequestContext``.
        experiment_id: the request's experiment id.
        run: only this run, when not ``None``.
        prefix: the tag prefix of one kind of payload (``metadata.*_TAG_PREFIX``).
        parse_layout: ``plugin_content`` bytes -> layout dict, or ``None`` for a layout this
            release cannot read (its tag is left out).

    Returns:
        run name -> its ``TagInfo`` list sorted by tag; runs without such a tag are left out.
    """
    run_tag_filter = provider.RunTagFilter(runs=[run]) if run is not None else None
    listing = data_provider.list_tensors(
        ctx,
        experiment_id=experiment_id,
        plugin_name=metadata.PLUGIN_NAME,
        run_tag_filter=run_tag_filter,
    )
    found = {}
    for run_name, tags in listing.items():
        infos = []
        for tag in sorted(tags):
            if not tag.startswith(prefix):
                continue
            series = tags[tag]
            layout = parse_layout(series.plugin_content)
            if layout is not None:
                infos.append(TagInfo(tag, layout, int(series.max_step), float(series.max_wall_time)))
        if infos:
            found[run_name] = infos
    return found


class RunsData:
    """The layer dynamics of every run, read on demand and cached per run.

    Safe to use from TensorBoard's request threads: two requests for the same uncached run read
    it once.
    """

    def __init__(self, data_provider, cache_bytes=DEFAULT_CACHE_BYTES):
        """Creates the reader.

        Args:
            data_provider: the ``tensorboard.data.provider.DataProvider`` of the TensorBoard
                context.
            cache_bytes: the most bytes of tables to keep between requests.
        """
        self._provider = data_provider
        self._cache_bytes = cache_bytes
        self._cache = collections.OrderedDict()  # (experiment, run) -> (signature, table)
        self._cache_lock = threading.Lock()
        self._build_locks: Dict[tuple, threading.Lock] = {}

    def list_layouts(self, ctx, experiment_id, run=None) -> Dict[str, List[TagInfo]]:
        """The layout tags of each run that has any, tags sorted by name.

        Args:
            ctx: the request's ``RequestContext``.
            experiment_id: the request's experiment id.
            run: only this run, when given.

        Returns:
            run name -> its ``TagInfo`` list; runs without per-layer metrics are left out.
        """
        return list_tags(
            self._provider, ctx, experiment_id, run, layer_metrics.TAG_PREFIX, _layout_content
        )

    def run_table(self, ctx, experiment_id, run, infos=None) -> Optional[table.RunTable]:
        """The merged table of one run, from the cache while its tags have no new data.

        Args:
            ctx: the request's ``RequestContext``.
            experiment_id: the request's experiment id.
            run: the run name.
            infos: the run's ``TagInfo`` list when the caller already listed it.

        Returns:
            A ``RunTable`` with float32 values, or ``None`` when the run has no per-layer metrics.
        """
        if infos is None:
            infos = self.list_layouts(ctx, experiment_id, run).get(run)
        if not infos:
            return None
        key = (experiment_id, run)
        signature = tuple((info.tag, info.max_step, info.max_wall_time) for info in infos)
        cached = self._cached(key, signature)
        if cached is not None:
            return cached
        with self._cache_lock:
            build_lock = self._build_locks.setdefault(key, threading.Lock())
        with build_lock:
            # Another request may have built it while this one waited.
            cached = self._cached(key, signature)
            if cached is not None:
                return cached
            run_table = self._read_table(ctx, experiment_id, run, infos)
            self._store(key, signature, run_table)
            return run_table

    def _cached(self, key, signature):
        with self._cache_lock:
            entry = self._cache.get(key)
            if entry is None or entry[0] != signature:
                return None
            self._cache.move_to_end(key)
            return entry[1]

    def _store(self, key, signature, run_table):
        with self._cache_lock:
            self._cache[key] = (signature, run_table)
            self._cache.move_to_end(key)
            total = sum(table_nbytes(entry[1]) for entry in self._cache.values())
            while total > self._cache_bytes and len(self._cache) > 1:
                _, (_, dropped) = self._cache.popitem(last=False)
                total -= table_nbytes(dropped)

    def _read_table(self, ctx, experiment_id, run, infos):
        data = self._provider.read_tensors(
            ctx,
            experiment_id=experiment_id,
            plugin_name=metadata.PLUGIN_NAME,
            downsample=READ_ALL,
            run_tag_filter=provider.RunTagFilter(runs=[run], tags=[info.tag for info in infos]),
        ).get(run, {})
        layouts = []
        for info in infos:
            content = info.content
            shape = (len(content["metrics"]), len(content["layers"]) + len(content["groups"]))
            # An event of the wrong shape cannot be placed in the layout's columns; it is skipped
            # rather than failing the whole run.
            events = [
                (datum.step, datum.numpy)
                for datum in data.get(info.tag, ())
                if getattr(datum.numpy, "shape", None) == shape
            ]
            steps, values = table.stack_events(events)
            if len(steps):
                layouts.append(table.LayoutEvents(content=content, steps=steps, values=values))
        if len(layouts) == 1:
            return single_layout_table(layouts[0])
        return _as_float32(table.build_run_table(layouts))
