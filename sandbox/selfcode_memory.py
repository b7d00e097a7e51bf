"""Peak memory of everything a measured process started: the container's memory cgroup.

Standard library only, like the harness. The largest ru_maxrss of any one process misses work
spread over processes alive at the same time (tests/hostile/regression-attack-memory-held-in-
forked-children.toml), and a forked child shares its parent's pages besides. With the cgroup
meter (the docker sandbox, where nothing but the harness and the measured process tree runs in
the container) the peak is the cgroup's usage, sampled by a thread every SAMPLE_SECONDS while
the process runs, minus its usage just before the process started: anonymous memory, page
tables, tmpfs files and newly cached pages of every process of the tree, in KiB. The cgroup's
own high-water mark (v1 memory.max_usage_in_bytes, v2 memory.peak) is no use: the cgroupfs is
read-only, so it cannot be reset between runs.

The CPU meter counts the sampling too: ~50 us a wake-up (the read itself is 0.4 us), 0.5 % of
a core while the process runs, the same on both sides. A peak shorter than the interval can be
missed; the last sample is taken right after the process exits, before its zombies are reaped.

Without the cgroup meter (the local sandbox) the caller keeps the largest ru_maxrss.
"""

from __future__ import annotations

import os
import threading
import time

SAMPLE_SECONDS = 0.01
_FILES = ("/sys/fs/cgroup/memory/memory.usage_in_bytes", "/sys/fs/cgroup/memory.current")


def usage_fd(cpu_meter: str) -> int | None:
    """The cgroup's current memory usage file (v1, then v2), opened, with the cgroup CPU meter;
    kept open for the harness's life (no measured process inherits it: close_fds)."""
    if cpu_meter != "cgroup":
        return None
    found = next((p for p in _FILES if os.access(p, os.R_OK)), None)
    if found is None:
        from selfcode_proc import HarnessError  # here: selfcode_proc imports this module

        raise HarnessError("no readable cgroup memory usage (memory.usage_in_bytes or current)")
    return os.open(found, os.O_RDONLY | os.O_CLOEXEC)


class MemoryMeter:
    """Samples the cgroup's memory usage in a thread; `stop()`: the growth over the start."""

    def __init__(self, fd: int | None) -> None:
        """`fd`: the usage file (usage_fd); None: a meter that measures nothing (`stop()` None)."""
        self._fd = -1 if fd is None else fd
        self._stop = False
        self._thread: threading.Thread | None = None
        self.start_bytes = self.peak_bytes = self._read()

    def _read(self) -> int:
        return 0 if self._fd < 0 else int(os.pread(self._fd, 64, 0))

    def _loop(self) -> None:
        # sleep(), not Event.wait(timeout): a timed wait on a lock costs ~90 us a wake-up, the
        # sleep ~50 us; stop() then waits up to one interval, which nothing measures.
        while not self._stop:
            time.sleep(SAMPLE_SECONDS)
            self.peak_bytes = max(self.peak_bytes, self._read())

    def start(self) -> None:
        """Start sampling; call it after the fork, so no thread runs while the child is made."""
        if self._fd < 0:
            return
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> int | None:
        """Stop (before any other fork) and return the peak growth in KiB, at least 1."""
        if self._fd < 0:
            return None
        self._stop = True
        if self._thread is not None:
            self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self._read())
        return max(1, (self.peak_bytes - self.start_bytes) // 1024)  # never 0: "measured"
