"""The opt-in fused pass for large parameters: one ``torch.compile``d kernel per parameter.

The eager chunked pass (``reduce``) reads each element about eleven times over its ops; the
kernel here reads the weights and both snapshots in one loop that forms every sum at once, then
writes the new previous snapshot. Inductor emits it as a single C++ function (one reduction loop,
one copy loop) for any parameter size: sizes are symbolic (``dynamic=True``), so ResNet-18's twenty
or so large sizes share one compilation.

Compiling costs seconds and needs a C++ compiler, so it happens lazily, at the first call that
uses it, never at import; inductor keeps the result in its on-disk cache for later processes. When
compiling fails the caller falls back to the eager pass: one warning says why, training goes on.
"""

import warnings
from typing import Dict, Optional, Tuple

import torch

# Columns of a sums row the kernels fill, in the order they return them (metrics.SUM_* order).
MAIN_COLUMNS = slice(0, 5)  # abs diff, sq diff, abs prev, sq init diff, sq weight
ELEMENTWISE_COLUMNS = slice(6, 8)  # ratio, zero previous count


def _sums(w, prev, init):
    diff = w - prev
    init_diff = w - init
    out = torch.stack([
        diff.abs().sum(),
        (diff * diff).sum(),
        prev.abs().sum(),
        (init_diff * init_diff).sum(),
        (w * w).sum(),
    ])
    prev.copy_(w)
    return out


def _sums_elementwise(w, prev, init):
    diff = w - prev
    init_diff = w - init
    abs_diff = diff.abs()
    abs_prev = prev.abs()
    zero = abs_prev == 0
    # Where the previous weight is 0 the ratio is undefined: it adds 0 and is counted instead.
    ratio = torch.where(zero, torch.zeros_like(abs_diff), abs_diff / torch.where(zero, 1.0, abs_prev))
    out = torch.stack([
        abs_diff.sum(),
        (diff * diff).sum(),
        abs_prev.sum(),
        (init_diff * init_diff).sum(),
        (w * w).sum(),
        ratio.sum(),
        zero.sum(dtype=torch.float32),
    ])
    prev.copy_(w)
    return out


def _key(elementwise: bool, options: Optional[Dict]) -> Tuple:
    return (elementwise, tuple(sorted((options or {}).items())))


# Compiled kernels and failures, shared by every tracker of the process (one compilation each).
_compiled: Dict[Tuple, object] = {}
_failed: Dict[Tuple, str] = {}


class FusedSums:
    """The fused kernel for one configuration, compiled on first use.

    Args:
        elementwise: also form the element-wise ratio sums (the ``rwc_elementwise`` variant).
        options: passed to ``torch.compile`` as its inductor ``options`` (``None``: defaults).
    """

    def __init__(self, elementwise: bool, options: Optional[Dict] = None):
        self._elementwise = elementwise
        self._options = dict(options) if options else None
        self._key = _key(elementwise, self._options)

    @property
    def available(self) -> bool:
        """False once compiling or running the kernel failed in this process."""
        return self._key not in _failed

    def __call__(self, w, prev, init, main_out, elementwise_out) -> bool:
        """Fills the sums of one parameter and copies ``w`` into ``prev``.

        Args:
            w, prev, init: 1-D fp32 tensors of equal size on one device.
            main_out: the five ``MAIN_COLUMNS`` of the parameter's sums row.
            elementwise_out: the two ``ELEMENTWISE_COLUMNS``, or ``None`` without that variant.

        Returns:
            False when the kernel is unavailable (nothing was written); the caller then runs the
            eager pass.
        """
        if not self.available:
            return False
        kernel = _compiled.get(self._key)
        if kernel is None:
            kernel = torch.compile(
                _sums_elementwise if self._elementwise else _sums,
                dynamic=True,
                fullgraph=True,
                options=self._options,
            )
            _compiled[self._key] = kernel
        try:
            out = kernel(w, prev, init)
        except Exception as exc:  # inductor raises many types (compiler missing, backend errors)
            # Dynamo wraps the backend's error; its cause says what actually went wrong.
            cause = exc.__cause__ or exc
            lines = [line for line in str(cause).splitlines() if line.strip()]
            reason = f"{type(cause).__name__}: {lines[0].strip()[:300] if lines else ''}"
            _failed[self._key] = reason
            warnings.warn(
                "fused=True: torch.compile could not build the fused reduction kernel "
                f"({reason}); using the eager pass instead. "
                "Install a C++ compiler or pass fused=False to silence this.",
                RuntimeWarning,
                stacklevel=4,
            )
            return False
        if self._elementwise:
            main_out.copy_(out[:5])
            elementwise_out.copy_(out[5:])
        else:
            main_out.copy_(out)
        return True
