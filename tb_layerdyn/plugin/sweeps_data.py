"""Reads interpolation sweeps and robustness tables through TensorBoard's data provider.

A sweep is one small tensor per scope at the training step it was taken (the payload is
``tb_layerdyn.format.sweeps``'s). Like ``runs_data``, everything comes from
``context.data_provider``, so both of TensorBoard's loaders serve the same sweeps, and a run's
sweeps are read again only when one of its sweep tags has new data.
"""

import collections
import dataclasses
import threading
from typing import Dict, List

import numpy as np
from tensorboard.compat.proto import summary_pb2
from tensorboard.data import provider

from tb_layerdyn.format import envelope as metadata
from tb_layerdyn.plugin import runs_data
from tb_layerdyn.format import sweeps as encoding

# The order of scopes at one step, as the ``sweeps`` route lists them.
SCOPES = encoding.INTERPOLATION_SCOPES + (encoding.ROBUSTNESS_SCOPE,)

# Sweeps are small (a few thousand floats each); this bounds the cache for logdirs with many runs.
DEFAULT_CACHE_BYTES = 64 * 2**20


@dataclasses.dataclass(frozen=True)
class Sweep:
    """One logged sweep of one scope.

    Attributes:
        step: the training step it was taken at.
        scope: ``"model"``, ``"layers"``, ``"parameters"`` or ``"robustness"``.
        layout: the checked layout (``encoding.parse_layout``).
        values: the float32 payload, of ``encoding.expected_shape(layout)``.
    """

    step: int
    scope: str
    layout: dict
    values: np.ndarray


def _sweep_layout(plugin_content):
    summary_metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=metadata.PLUGIN_NAME, content=plugin_content
        )
    )
    try:
        return encoding.parse_layout(
            metadata.parse_content(summary_metadata, encoding.KIND, encoding.VERSION)
        )
    except metadata.FormatError:
        return None


def _sort_key(sweep):
    return sweep.step, SCOPES.index(sweep.scope)


class SweepsData:
    """The sweeps of every run, read on demand and cached per run; safe across request threads."""

    def __init__(self, data_provider, cache_bytes=DEFAULT_CACHE_BYTES):
        """Creates the reader.

        Args:
            data_provider: the ``tensorboard.data.provider.DataProvider`` of the TensorBoard
                context.
            cache_bytes: the most bytes of sweep payloads to keep between requests.
        """
        self._provider = data_provider
        self._cache_bytes = cache_bytes
        self._cache = collections.OrderedDict()  # (experiment, run) -> (signature, sweeps)
        self._lock = threading.Lock()

    def list_tags(self, ctx, experiment_id, run=None) -> Dict[str, List[runs_data.TagInfo]]:
        """The sweep tags of each run that has any, tags sorted by name.

        Args:
            ctx: the request's ``RequestContext``.
            experiment_id: the request's experiment id.
            run: only this run, when given.

        Returns:
            run name -> its ``TagInfo`` list; tags whose layout this release cannot read are
            left out, and so are runs without any sweep tag.
        """
        return runs_data.list_tags(
            self._provider, ctx, experiment_id, run, encoding.TAG_PREFIX, _sweep_layout
        )

    def sweeps(self, ctx, experiment_id, run, infos=None) -> List[Sweep]:
        """Every sweep of one run, sorted by step, then scope in the order of ``SCOPES``.

        When one scope was logged more than once at a step (for example with other alphas, which
        gives another tag), the sweep written last (the latest wall time) is the one kept, as
        TensorBoard keeps the last value of a repeated step.

        Args:
            ctx: the request's ``RequestContext``.
            experiment_id: the request's experiment id.
            run: the run name.
            infos: the run's sweep ``TagInfo`` list when the caller already listed it.

        Returns:
            A list of ``Sweep``; empty when the run has none.
        """
        if infos is None:
            infos = self.list_tags(ctx, experiment_id, run).get(run)
        if not infos:
            return []
        key = (experiment_id, run)
        signature = tuple((info.tag, info.max_step, info.max_wall_time) for info in infos)
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None and entry[0] == signature:
                self._cache.move_to_end(key)
                return entry[1]
        sweeps = self._read(ctx, experiment_id, run, infos)
        self._store(key, signature, sweeps)
        return sweeps

    def counts(self, ctx, experiment_id) -> Dict[str, int]:
        """run name -> how many sweeps ``sweeps`` lists for it, for runs that have at least one."""
        counts = {}
        for run, infos in self.list_tags(ctx, experiment_id).items():
            count = len(self.sweeps(ctx, experiment_id, run, infos))
            if count:
                counts[run] = count
        return counts

    def _read(self, ctx, experiment_id, run, infos):
        data = self._provider.read_tensors(
            ctx,
            experiment_id=experiment_id,
            plugin_name=metadata.PLUGIN_NAME,
            downsample=runs_data.READ_ALL,
            run_tag_filter=provider.RunTagFilter(runs=[run], tags=[info.tag for info in infos]),
        ).get(run, {})
        latest = {}  # (step, scope) -> (wall time, Sweep)
        for info in infos:
            layout = info.content
            shape = encoding.expected_shape(layout)
            for datum in data.get(info.tag, ()):
                values = datum.numpy
                # A payload that does not fit its layout cannot be decoded; it is skipped rather
                # than failing every other sweep of the run.
                if getattr(values, "shape", None) != shape:
                    continue
                sweep = Sweep(int(datum.step), layout["scope"], layout, values.astype(np.float32))
                key = (sweep.step, sweep.scope)
                if key not in latest or datum.wall_time >= latest[key][0]:
                    latest[key] = (datum.wall_time, sweep)
        return sorted((sweep for _, sweep in latest.values()), key=_sort_key)

    def _store(self, key, signature, sweeps):
        with self._lock:
            self._cache[key] = (signature, sweeps)
            self._cache.move_to_end(key)
            total = sum(_nbytes(entry[1]) for entry in self._cache.values())
            while total > self._cache_bytes and len(self._cache) > 1:
                _, (_, dropped) = self._cache.popitem(last=False)
                total -= _nbytes(dropped)


def _nbytes(sweeps):
    return sum(sweep.values.nbytes for sweep in sweeps)
