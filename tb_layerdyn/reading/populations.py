"""Distances between runs, estimated from their weight sketches (``format.sketches``).

A **population** is every run's model whose sketches share an architecture
(``sketches.architecture``: the same layers with the same parameter counts, sketch sizes and
seeds); only their sketches are comparable. ``read()``'s ``Runs.distances`` and
``Runs.trajectories`` and the plugin's population routes both build populations here from the
store's ``RunData``: each member keeps the steps of its sketch tags (int64, a few per step) and
reads rows from the store's columns when asked, so what stays in memory is O(runs x steps), and a
distance matrix reads one row per run.

* ``Population.distances(step, layer)``: the runs having a sketch at ``step``, their estimated
  Euclidean distances (whole model: the root of the sum of the layers' squared distances, which
  is the distance between the concatenated sketches), and an average-linkage clustering order
  (``cluster_order``). Runs without a sketch at that step are listed as missing and left out.
* ``Population.trajectories(layer)``: every run's sketches over training projected on the two
  principal directions of all of them pooled (``principal_directions``).

Numpy only.
"""

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tb_layerdyn.format import sketches as payload
from tb_layerdyn.reading import columns

# Subspace iterations of ``principal_directions`` and the extra directions they carry.
_ITERATIONS = 8
_OVERSAMPLE = 8
_DIRECTION_SEED = 20240311  # a local generator's seed: never the global RNG streams
# Widths up to which principal directions are computed exactly (an eigendecomposition).
_EXACT_LIMIT = 2048


@dataclasses.dataclass
class _Part:
    """One sketch tag of a member: where its rows are and which of their columns to take."""

    files: columns.TagFiles
    width: int
    steps: np.ndarray
    take: np.ndarray  # row column of each of the population's columns, in its layer order


class Member:
    """One run's model in a population: its sketch tags of that architecture, merged by step (a
    step present in several tags is read from the one seen last)."""

    def __init__(self, run: str, model: Optional[str], parts: List[_Part]):
        self.run = run
        self.model = model
        self._parts = parts
        self.steps = np.unique(np.concatenate([p.steps for p in parts])) if parts else np.zeros(0, np.int64)

    def rows(self, steps: np.ndarray) -> np.ndarray:
        """float32 ``(len(steps), width)`` of the sketches at ``steps`` (NaN where none)."""
        width = len(self._parts[0].take)
        out = np.full((len(steps), width), np.nan, dtype=np.float32)
        done = np.zeros(len(steps), dtype=bool)
        for part in reversed(self._parts):
            where = np.searchsorted(part.steps, steps)
            inside = where < len(part.steps)
            hit = np.zeros(len(steps), dtype=bool)
            hit[inside] = part.steps[where[inside]] == steps[inside]
            hit &= ~done
            if not hit.any():
                continue
            rows = where[hit]
            first, last = int(rows.min()), int(rows.max()) + 1
            block = columns.read_rows(part.files.values(0), part.width, first, last)
            out[hit] = block[rows - first][:, part.take]
            done |= hit
        return out


@dataclasses.dataclass(frozen=True)
class Distances:
    """A distance matrix between the runs of a population at one step.

    ``names, matrix = distances`` unpacks the two main fields.

    Attributes:
        names: the runs (``entry_key`` form in ``read()``, run names in the plugin) with a sketch at
            ``step``, in the population's order (sorted).
        matrix: float64 ``(len(names), len(names))``, symmetric, zero diagonal; NaN in the row and
            column of a run whose weights were not finite.
        order: a permutation of ``range(len(names))``: the leaf order of an average-linkage
            clustering (``cluster_order``), rows with NaN last.
        missing: the chosen runs without a sketch at ``step``, left out.
        step, layer: what was asked (``layer`` ``None`` for the whole model).
        rms, bound_95: the relative error figures of the squared distances (``sketches.
            error_figures``): standard deviation at most ``rms``; within ``bound_95`` with
            probability 95% for each pair. Zero when every layer is kept exactly.
    """

    names: List[str]
    matrix: np.ndarray
    order: List[int]
    missing: List[str]
    step: int
    layer: Optional[str]
    rms: float
    bound_95: float

    def __iter__(self):
        return iter((self.names, self.matrix))


@dataclasses.dataclass(frozen=True)
class Trajectories:
    """Every run's sketches over training, projected on the two principal directions of all.

    Attributes:
        names: the runs, in the population's order.
        steps: int64, every step where some run has a sketch.
        x, y: float64 ``(len(names), len(steps))`` coordinates (NaN where a run has no sketch at
            that step, or its weights were not finite), in the units of the weights.
        explained: the fraction of the pooled sketches' variance along each direction (NaN when
            they have none).
        mean_distance: the mean distance of the points from their centre.
        layer: the layer (``None`` for the whole model).
    """

    names: List[str]
    steps: np.ndarray
    x: np.ndarray
    y: np.ndarray
    explained: Tuple[float, float]
    mean_distance: float
    layer: Optional[str]


class Population:
    """The runs' models whose sketches share one architecture.

    Attributes:
        model: the trackers' ``name=`` (``None`` without one).
        architecture: ``sketches.architecture`` of their layouts, eight hex digits.
        layers, param_counts, dims, exact: per layer in depth order (that of the first member).
        members: the ``Member``s, sorted by run name.
    """

    def __init__(self, model, architecture, layout, members: List[Member]):
        self.model = model
        self.architecture = architecture
        self.layers = list(layout.layers)
        self.param_counts = list(layout.param_counts)
        self.dims = list(layout.dims)
        self.exact = list(layout.exact)
        self.members = members
        self._index = {m.run: i for i, m in enumerate(members)}
        starts = np.cumsum([0] + self.dims)
        self._columns = {name: (int(starts[i]), int(starts[i + 1])) for i, name in enumerate(self.layers)}

    @property
    def runs(self) -> List[str]:
        return [m.run for m in self.members]

    def steps(self, members: Optional[Sequence[Member]] = None) -> np.ndarray:
        """Every step where one of ``members`` (all by default) has a sketch."""
        chosen = self.members if members is None else members
        if not chosen:
            return np.zeros(0, dtype=np.int64)
        return np.unique(np.concatenate([m.steps for m in chosen]))

    def error_figures(self, layer: Optional[str] = None) -> Tuple[float, float]:
        """``(rms, bound_95)`` for the whole model or one layer."""
        if layer is None:
            return payload.error_figures(self.dims, self.exact)
        i = self.layers.index(layer)
        return payload.error_figures([self.dims[i]], [self.exact[i]])

    def choose(self, runs: Optional[Sequence[str]] = None) -> List[Member]:
        """The members named by ``runs`` (every one when ``None``), in population order.

        Raises:
            KeyError: a name that is not a member; the message names it.
        """
        if runs is None:
            return list(self.members)
        unknown = [r for r in runs if r not in self._index]
        if unknown:
            raise KeyError(f"runs {unknown[:5]} are not in this population")
        return [self.members[i] for i in sorted({self._index[r] for r in runs})]

    def _span(self, layer):
        if layer is None:
            return slice(0, int(sum(self.dims)))
        if layer not in self._columns:
            raise KeyError(f"layer {layer!r} is not among the population's layers {self.layers}")
        start, stop = self._columns[layer]
        return slice(start, stop)

    def distances(self, step: int, layer: Optional[str] = None, runs: Optional[Sequence[str]] = None) -> Distances:
        """The estimated distances between the chosen runs at ``step`` (see ``Distances``)."""
        span = self._span(layer)
        chosen = self.choose(runs)
        present = [m for m in chosen if _has(m.steps, step)]
        missing = [m.run for m in chosen if not _has(m.steps, step)]
        wanted = np.array([step], dtype=np.int64)
        vectors = np.empty((len(present), span.stop - span.start), dtype=np.float64)
        for i, member in enumerate(present):
            vectors[i] = member.rows(wanted)[0, span]
        matrix = pairwise(vectors)
        rms, bound = self.error_figures(layer)
        return Distances(
            names=[m.run for m in present], matrix=matrix, order=cluster_order(matrix),
            missing=missing, step=int(step), layer=layer, rms=rms, bound_95=bound,
        )

    def trajectories(self, layer: Optional[str] = None, runs: Optional[Sequence[str]] = None,
                     first: Optional[int] = None, last: Optional[int] = None) -> Trajectories:
        """Every chosen run's sketches at the steps in ``[first, last]`` projected on the two
        principal directions of them all (see ``Trajectories``)."""
        span = self._span(layer)
        chosen = self.choose(runs)
        steps = self.steps(chosen)
        if first is not None:
            steps = steps[steps >= first]
        if last is not None:
            steps = steps[steps <= last]
        width = span.stop - span.start
        points = np.full((len(chosen), len(steps), width), np.nan, dtype=np.float32)
        for i, member in enumerate(chosen):
            has = np.isin(steps, member.steps)
            if has.any():
                points[i, has] = member.rows(steps[has])[:, span]
        flat = points.reshape(-1, width)
        valid = np.isfinite(flat).all(axis=1)
        usable = flat[valid]  # float32, compacted
        del points, flat
        x = np.full(len(valid), np.nan)
        y = np.full(len(valid), np.nan)
        explained, mean_distance = (np.nan, np.nan), 0.0
        if len(usable):
            coords, variances, total, mean_distance = _project(usable, 2)
            # Sign: the points of the latest step that has some lie on the positive side.
            step_of_point = np.tile(np.arange(len(steps)), len(chosen))[valid]
            latest = step_of_point == step_of_point.max()
            signs = np.where(coords[latest].mean(axis=0) < 0, -1.0, 1.0)
            coords *= signs
            x[valid], y[valid] = coords[:, 0], coords[:, 1]
            if total > 0:
                explained = tuple(float(v / total) for v in variances)
        shape = (len(chosen), len(steps))
        return Trajectories(
            names=[m.run for m in chosen], steps=steps, x=x.reshape(shape), y=y.reshape(shape),
            explained=explained, mean_distance=mean_distance, layer=layer,
        )


# Rows converted to float64 at a time by ``_project``.
_CHUNK = 4096


def _project(points: np.ndarray, count: int):
    """Centres float32 ``points`` and projects them on their ``count`` principal directions.

    Where the covariance is small (width at most ``_EXACT_LIMIT`` and not above the number of
    points), it is summed in float64 a chunk of rows at a time, so memory stays about the
    float32 points themselves; otherwise ``principal_directions`` works on a float64 copy.

    Returns:
        ``(coords (points, count), variances (count,), total sum of squares, mean distance of
        the points from their centre)``.
    """
    rows, width = points.shape
    chunks = [slice(start, min(rows, start + _CHUNK)) for start in range(0, rows, _CHUNK)]
    centre = np.zeros(width)
    for chunk in chunks:
        centre += points[chunk].sum(axis=0, dtype=np.float64)
    centre /= rows
    if width <= min(rows, _EXACT_LIMIT):
        covariance = np.zeros((width, width))
        for chunk in chunks:
            block = points[chunk] - centre
            covariance += block.T @ block
        values, vectors = np.linalg.eigh(covariance)
        directions, variances = _leading(values, vectors.T, count)
        total = float(np.trace(covariance))
    else:
        centred = points - centre
        directions, variances = principal_directions(centred, count, _EXACT_LIMIT)
        total = float(np.einsum("ij,ij->", centred, centred))
        del centred
    coords = np.empty((rows, count))
    distance_sum = 0.0
    for chunk in chunks:
        block = points[chunk] - centre
        coords[chunk] = block @ directions.T
        distance_sum += float(np.sqrt(np.einsum("ij,ij->i", block, block)).sum())
    return coords, variances, total, distance_sum / rows


def _has(steps: np.ndarray, step: int) -> bool:
    where = int(np.searchsorted(steps, step))
    return where < len(steps) and int(steps[where]) == step


def pairwise(vectors: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of ``vectors`` (float64), NaN for a row that is not
    finite. Centred first, so that close runs far from the origin lose no precision."""
    n = len(vectors)
    matrix = np.full((n, n), np.nan)
    finite = np.isfinite(vectors).all(axis=1)
    if finite.any():
        rows = vectors[finite]
        rows = rows - rows.mean(axis=0)
        norms = (rows * rows).sum(axis=1)
        squared = norms[:, None] + norms[None, :] - 2.0 * (rows @ rows.T)
        np.maximum(squared, 0.0, out=squared)
        inner = np.sqrt(squared)
        np.fill_diagonal(inner, 0.0)
        inner = (inner + inner.T) / 2
        index = np.flatnonzero(finite)
        matrix[np.ix_(index, index)] = inner
    return matrix


def cluster_order(matrix: np.ndarray) -> List[int]:
    """The leaf order of an average-linkage (UPGMA) clustering of a distance matrix.

    The nearest-neighbour chain algorithm (O(n^2) time, one n x n float64 copy): average linkage
    is reducible, so merging reciprocal nearest neighbours gives the same tree as merging the
    closest pair each time. Ties go to the chain's previous entry, then to the lower index. Each
    merge puts the cluster holding the smaller index first. Rows with a NaN diagonal (runs whose
    weights were not finite, as ``pairwise`` marks them) are left out and come last, in index
    order.
    """
    n = len(matrix)
    finite = np.isfinite(np.diagonal(matrix)) if n else np.zeros(0, bool)
    index = np.flatnonzero(finite)
    finite[index] = np.isfinite(matrix[np.ix_(index, index)]).all(axis=1)
    index = np.flatnonzero(finite)
    tail = [int(i) for i in np.flatnonzero(~finite)]
    m = len(index)
    if m <= 2:
        return [int(i) for i in index] + tail
    dist = matrix[np.ix_(index, index)].astype(np.float64, copy=True)
    np.fill_diagonal(dist, np.inf)
    size = np.ones(m)
    node = list(range(m))  # the tree node held by each slot
    low = list(range(m))  # the smallest leaf of each slot's cluster
    children: Dict[int, Tuple[int, int]] = {}
    next_node = m
    active = np.ones(m, dtype=bool)
    chain: List[int] = []
    remaining = m
    while remaining > 1:
        if not chain:
            chain.append(int(np.flatnonzero(active)[0]))
        top = chain[-1]
        row = dist[top]
        nearest = int(np.argmin(row))
        if len(chain) > 1 and row[chain[-2]] <= row[nearest]:
            nearest = chain[-2]
        if len(chain) > 1 and nearest == chain[-2]:
            chain.pop()
            chain.pop()
            a, b = sorted((top, nearest))
            merged = (size[a] * dist[a] + size[b] * dist[b]) / (size[a] + size[b])
            merged[a] = np.inf
            merged[~active] = np.inf
            dist[a, :] = merged
            dist[:, a] = merged
            dist[b, :] = np.inf
            dist[:, b] = np.inf
            active[b] = False
            first, second = (a, b) if low[a] < low[b] else (b, a)
            children[next_node] = (node[first], node[second])
            node[a] = next_node
            low[a] = min(low[a], low[b])
            size[a] += size[b]
            next_node += 1
            remaining -= 1
        else:
            chain.append(nearest)
    order: List[int] = []
    stack = [node[int(np.flatnonzero(active)[0])]]
    while stack:
        current = stack.pop()
        if current < m:
            order.append(int(index[current]))
        else:
            left, right = children[current]
            stack.append(right)
            stack.append(left)
    return order + tail


def principal_directions(centred: np.ndarray, count: int = 2,
                         exact_limit: int = _EXACT_LIMIT) -> Tuple[np.ndarray, np.ndarray]:
    """The ``count`` leading principal directions of centred rows, and the variance (sum of
    squares) along each: ``(count, width)`` unit rows (zero rows beyond the rank) and ``(count,)``.

    Exact when ``min(rows, width) <= exact_limit``: the eigenvectors of the smaller of the
    ``width x width`` covariance and the ``rows x rows`` Gram matrix (30,000 points of 384
    values: about 0.4 s). Beyond that, subspace iteration from a fixed start (a local generator
    seeded by a constant, never the global RNG streams) with Rayleigh-Ritz at the end, which
    never forms either matrix; its directions converge as the ratio of the third to the second
    singular value to the power ``2 * _ITERATIONS``.
    """
    rows, width = centred.shape
    directions = np.zeros((count, width))
    variances = np.zeros(count)
    if rows == 0 or width == 0:
        return directions, variances
    if min(rows, width) <= exact_limit:
        if width <= rows:
            values, vectors = np.linalg.eigh(centred.T @ centred)
            candidates = vectors.T
        else:
            values, vectors = np.linalg.eigh(centred @ centred.T)
            candidates = (centred.T @ vectors).T
    else:
        block = min(width, rows, count + _OVERSAMPLE)
        start = np.random.default_rng(_DIRECTION_SEED).standard_normal((width, block))
        basis, _ = np.linalg.qr(start)
        for _ in range(_ITERATIONS):
            basis, _ = np.linalg.qr(centred.T @ (centred @ basis))
        projected = centred @ basis
        values, vectors = np.linalg.eigh(projected.T @ projected)
        candidates = (basis @ vectors).T
    return _leading(values, candidates, count)


def _leading(values, candidates, count):
    """The unit rows of ``candidates`` with the ``count`` largest ``values``, and those values
    (zero where a value is not positive); each with its largest component positive."""
    width = candidates.shape[1]
    directions = np.zeros((count, width))
    variances = np.zeros(count)
    picked = np.argsort(values)[::-1][:count]
    for j, column in enumerate(picked):
        value = float(max(values[column], 0.0))
        norm = float(np.linalg.norm(candidates[column]))
        if value <= 1e-300 or norm == 0:
            continue
        direction = candidates[column] / norm
        if direction[int(np.argmax(np.abs(direction)))] < 0:
            direction = -direction
        directions[j] = direction
        variances[j] = value
    return directions, variances


def build(sources) -> List[Population]:
    """Every population of some runs.

    Args:
        sources: ``(name, RunData)`` pairs; ``name`` is what members are called (the run's name,
            or the plugin's name with its logdir group).

    Returns:
        The populations, sorted by model (unnamed first), then by decreasing number of members,
        then architecture.
    """
    groups: Dict[Tuple[Optional[str], str], Dict[str, list]] = {}
    layouts = {}
    for name, run in sources:
        for tag_id, state in enumerate(run.tags):
            if state.kind != payload.KIND or state.error is not None or not run.rows[tag_id]:
                continue
            layout = state.layout
            key = (layout.model, layout.architecture)
            layouts.setdefault(key, layout)
            groups.setdefault(key, {}).setdefault(name, []).append((run, tag_id, layout))
    found = []
    for (model, architecture), by_run in groups.items():
        reference = layouts[(model, architecture)]
        members = []
        for name in sorted(by_run):
            parts = []
            for run, tag_id, layout in by_run[name]:
                own = layout.offsets
                take = np.concatenate([np.arange(*own[layer]) for layer in reference.layers])
                files = run.tag_files(tag_id)
                steps = columns.read_steps(files, run.rows[tag_id])
                parts.append(_Part(files, layout.shape[1], steps, take))
            members.append(Member(name, model, parts))
        found.append(Population(model, architecture, reference, members))
    found.sort(key=lambda p: (p.model is not None, p.model or "", -len(p.members), p.architecture))
    return found
