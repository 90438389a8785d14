"""The population routes: which runs have weight sketches, distances between runs, trajectories.

``http_api.md`` ("Distances between runs") is their contract. The work is
``reading.populations``, shared with ``read()``; here are the lookups (400 for an ambiguous or
malformed choice, 404 for what does not exist) and the bodies, JSON or binary (a little-endian
``uint32`` header length, the JSON header padded to 8 bytes, then float32 arrays).
"""

import json
import struct
import threading

import numpy as np
from tensorboard import errors

from tb_layerdyn.plugin import json_numbers, params
from tb_layerdyn.plugin.payloads import RawJSON
from tb_layerdyn.reading import populations as population_mod

ORDERS = ("cluster", "name")
FORMATS = ("json", "binary")
MAX_STEP = 2**63 - 1


class Populations:
    """The populations of what the plugin serves, rebuilt when a run's store state changes.

    Args:
        data: the plugin's ``data.PluginData``.
    """

    def __init__(self, data):
        self._data = data
        self._lock = threading.Lock()
        self._key = None
        self._found = []

    def all(self):
        """Every ``reading.populations.Population``, sorted as ``populations.build`` sorts them."""
        sources = self._data.sources()
        key = tuple((name, run.stamp) for name, run in sources)
        with self._lock:
            if key == self._key:
                return self._found
        found = population_mod.build(sources)
        with self._lock:
            self._key, self._found = key, found
        return found

    def pick(self, model, architecture):
        """The population of ``model`` and ``architecture`` (which may be left out when the model
        has one), or 404 / 400."""
        candidates = [p for p in self.all() if p.model == model]
        who = "trackers without a name" if model is None else f"model {model!r}"
        if not candidates:
            raise errors.NotFoundError(f"no run of {who} has weight sketches")
        if architecture is not None:
            for found in candidates:
                if found.architecture == architecture:
                    return found
            raise errors.NotFoundError(
                f"{who} has no sketches of architecture {architecture!r}; it has "
                f"{_architectures(candidates)}"
            )
        if len(candidates) > 1:
            raise errors.InvalidArgumentError(
                f"{who} has sketches of several architectures; pass query parameter "
                f"'architecture', one of {_architectures(candidates)}"
            )
        return candidates[0]


def _architectures(found):
    return ", ".join(f"{p.architecture} ({len(p.members)} runs, layers {', '.join(p.layers)})" for p in found)


# ---------------------------------------------------------------------- query parameters


def query(request):
    """``(model, architecture, layer, runs)`` of a population route's request (400 when bad)."""
    model = params.optional(request, "model")
    architecture = params.optional(request, "architecture")
    layer = params.optional(request, "layer")
    runs = request.args.getlist("run")
    if any(r == "" for r in runs):
        raise errors.InvalidArgumentError("query parameter 'run' is empty; leave it out instead")
    return model, architecture, layer, (runs or None)


def chosen(found, layer, runs):
    """The members named by ``runs`` (404 for one outside the population), after checking
    ``layer`` (404 when unknown)."""
    if layer is not None and layer not in found.layers:
        raise errors.NotFoundError(
            f"layer {layer!r} is not among the population's layers {', '.join(found.layers)}"
        )
    try:
        return found.choose(runs)
    except KeyError:
        unknown = [r for r in runs if r not in set(found.runs)]
        raise errors.NotFoundError(
            f"runs {', '.join(repr(r) for r in unknown[:5])} are not in population "
            f"{found.architecture} of {_who(found.model)}"
        ) from None


def _who(model):
    return "trackers without a name" if model is None else f"model {model!r}"


def _figures(found, layer):
    rms, bound = found.error_figures(layer)
    return {"rms": rms, "bound_95": bound}


# ---------------------------------------------------------------------- bodies


def listing(all_found, model_filter, filtered, loading):
    """The ``sketches`` body."""
    out = []
    for found in all_found:
        if filtered and found.model != model_filter:
            continue
        steps = found.steps()
        counts = np.zeros(len(steps), dtype=np.int64)
        missing = []
        for member in found.members:
            has = np.isin(steps, member.steps)
            counts += has
            missing.append(np.flatnonzero(~has).tolist())
        out.append(dict(
            {
                "model": found.model,
                "architecture": found.architecture,
                "layers": found.layers,
                "param_counts": found.param_counts,
                "dims": found.dims,
                "exact": found.exact,
                "runs": found.runs,
                "steps": steps.tolist(),
                "counts": counts.tolist(),
                "missing": missing,
            },
            **_figures(found, None),
        ))
    return {"populations": out, "loading": bool(loading)}


def distances(found, step, layer, members, order):
    """``(header, matrix)`` of the ``distances`` route (404 when no chosen run has ``step``)."""
    result = found.distances(step, layer, [m.run for m in members])
    if not result.names:
        steps = found.steps(members)
        raise errors.NotFoundError(
            f"no chosen run of population {found.architecture} has a sketch at step {step}; "
            f"they have {_some(steps)}"
        )
    matrix = result.matrix
    finite = matrix[np.isfinite(matrix)]
    header = dict(
        {
            "model": found.model,
            "architecture": found.architecture,
            "layer": layer,
            "step": int(step),
            "runs": result.names,
            "missing": result.missing,
            "order": result.order if order == "cluster" else list(range(len(result.names))),
            "max": float(finite.max()) if finite.size else None,
        },
        **_figures(found, layer),
    )
    return header, matrix


def distances_json(header, matrix):
    body = dict(header)
    # As float32 first: nine digits then read back as exactly the binary answer's values.
    body["matrix"] = RawJSON(json_numbers.float_rows(matrix.astype(np.float32))) if len(matrix) else []
    return body


def trajectories(found, layer, members):
    """``(header, x, y)`` of the ``trajectories`` route."""
    result = found.trajectories(layer, [m.run for m in members])
    header = {
        "model": found.model,
        "architecture": found.architecture,
        "layer": layer,
        "runs": result.names,
        "steps": result.steps.tolist(),
        "explained": [_finite(v) for v in result.explained],
        "mean_distance": _finite(result.mean_distance),
    }
    return header, result.x, result.y


def trajectories_json(header, x, y):
    body = dict(header)
    for key, values in (("x", x), ("y", y)):
        body[key] = (RawJSON(json_numbers.float_rows(values.astype(np.float32))) if values.size
                     else [[] for _ in range(len(values))])
    return body


def binary(header, points, arrays):
    """A binary body: ``uint32`` length, the JSON header with ``points`` (padded to 8 bytes),
    then each array as little-endian float32, row after row."""
    text = json.dumps(dict(header, points=int(points)), separators=(",", ":"), allow_nan=False).encode("ascii")
    padding = -(4 + len(text)) % 8
    data = b"".join(np.ascontiguousarray(np.asarray(a, dtype="<f4")).tobytes() for a in arrays)
    return struct.pack("<I", len(text) + padding) + text + b" " * padding + data


def _finite(value):
    value = float(value)
    return value if np.isfinite(value) else None


def _some(steps, shown=8):
    values = [str(s) for s in np.asarray(steps).tolist()]
    if not values:
        return "no step"
    if len(values) > shown:
        values = values[: shown // 2] + ["…"] + values[-(shown // 2):]
    return f"steps {', '.join(values)} ({len(steps)} steps)"


def step_param(request):
    return params.required_integer(request, "step", 0, MAX_STEP)
