"""Reading a cgroup's counters over time, for plots and for facts.

threading is imported by Sampler alone: the package (and with it this
module) is on the container start path, which never samples.
"""

import time


def sample(manager, until=None, hz=20, timeout=60.0):
    """Read manager.stats() `hz` times a second until `until()` is true (by
    default: until no process is left), or `timeout` seconds.

    Returns lists ready to plot: {"t": [seconds since start], "memory_current":
    [...], "cpu_usage_usec": [...], ...}, one entry per reading."""
    if until is None:
        def until():
            return not manager.pids()
    series = {"t": []}
    period = 1.0 / hz
    start = time.monotonic()
    next_at = start
    while True:
        now = time.monotonic()
        _append(series, now - start, manager.stats())
        if until() or now - start > timeout:
            break
        next_at += period
        time.sleep(max(0.0, next_at - time.monotonic()))
    return series


def _append(series, t, stats):
    series["t"].append(round(t, 4))
    n = len(series["t"])
    for key, value in stats.items():
        series.setdefault(key, [None] * (n - 1)).append(value)


class Sampler:
    """sample() in a background thread: start(), do things, stop() -> lists."""

    def __init__(self, manager, hz=20):
        import threading
        self.manager = manager
        self.hz = hz
        self._stop = threading.Event()
        self._thread = None
        self.series = None

    def start(self):
        import threading

        def run():
            self.series = sample(self.manager, until=self._stop.is_set,
                                 hz=self.hz, timeout=3600)
        self._thread = threading.Thread(target=run, name="cgroup-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join()
        return self.series

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
