"""Timing helpers shared by the benchmarks: interleaved repetitions on a noisy machine.

Machines here are shared and their speed drifts over a run. Timing the variants of one measurement
in turn within each repetition (rotating which goes first) exposes them all to the same drift, so
their ratios stay meaningful even when the absolute figures move.
"""

import statistics
import time


def interleaved(variants, repetitions, cpu=None):
    """Times each variant once per repetition, rotating the order between repetitions.

    Args:
        variants: name -> callable taking no argument and returning the seconds it wants counted
            (or ``None`` to count its whole wall time).
        repetitions: how many times each variant runs.
        cpu: optional dict, filled with name -> list of this process's CPU seconds per repetition.
            CPU time leaves out the time other processes held the cores, so on a shared machine it
            is the steadier figure; it also counts work of background threads (a writer's thread).

    Returns:
        name -> list of wall-clock seconds, one per repetition.
    """
    names = list(variants)
    seconds = {name: [] for name in names}
    if cpu is not None:
        cpu.update({name: [] for name in names})
    for rep in range(repetitions):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            started, cpu_started = time.perf_counter(), time.process_time()
            counted = variants[name]()
            elapsed = time.perf_counter() - started
            seconds[name].append(elapsed if counted is None else counted)
            if cpu is not None:
                cpu[name].append(time.process_time() - cpu_started)
    return seconds


def median(values):
    """The median of a non-empty sequence of numbers."""
    return statistics.median(values)


def overhead_percent(seconds, baseline):
    """Median extra time over ``baseline``, in percent, from paired repetitions.

    Each repetition's ratio compares two runs taken close together in time; the median of those
    ratios is less sensitive to drift than the ratio of two medians.
    """
    ratios = [s / b for s, b in zip(seconds, baseline)]
    return 100.0 * (median(ratios) - 1.0)


# glibc's malloc moves its mmap and trim thresholds as a process frees large blocks. A small
# model's training loop then settles, at random from one process to the next and sometimes in the
# middle of a run, into a state where every step returns its activations to the kernel and faults
# them back in: measured on LeNet-5 (batch 64, no logging at all), 0 or 1,000-1,600 minor page
# faults per step, 8.2 against 10.7 ms of CPU per step. That is larger than the overheads measured,
# so the loop benchmarks fix both thresholds first.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
STEADY_MMAP_BYTES = 32 << 20
STEADY_TRIM_BYTES = 1 << 30


def steady_heap() -> str:
    """Fixes glibc malloc's thresholds for this process (``MALLOC_MMAP_THRESHOLD_`` and
    ``MALLOC_TRIM_THRESHOLD_`` do the same from the environment); says what it did, for the
    report. Does nothing where the C library is not glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        ok = libc.mallopt(_M_MMAP_THRESHOLD, STEADY_MMAP_BYTES) and libc.mallopt(_M_TRIM_THRESHOLD, STEADY_TRIM_BYTES)
    except (OSError, AttributeError, TypeError):
        ok = False
    if not ok:
        return "default heap (no glibc mallopt)"
    return f"glibc heap thresholds fixed: mmap {STEADY_MMAP_BYTES >> 20} MiB, trim {STEADY_TRIM_BYTES >> 20} MiB"
