"""Peak memory of a piece of work, measured in a child process.

``PEAK_SAMPLER`` is Python source that a benchmark's child script starts with: ``rss_kb()`` reads
the process's resident set size, and once ``threading.Thread(target=sample, daemon=True)`` is
started, ``peak[0]`` follows its largest value (sampled every 2 ms) until ``done.set()``. It
measures one stretch of work rather than the process's lifetime peak (``ru_maxrss`` would also
count the imports').
"""

PEAK_SAMPLER = r"""
import threading, time

def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

peak = [0]
done = threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss_kb())
        time.sleep(0.002)
"""
