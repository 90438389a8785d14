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
