"""How many CPUs this process may use: the one answer every stage and engine asks for.

A Slurm allocation, `taskset` or a container's cpuset restricts a process to some of the
machine's cores through its affinity mask; `os.cpu_count()` still reports every core, so a
thread pool sized from it oversubscribes the allocation. Linux (and the BSDs Python supports
it on) answer `os.sched_getaffinity`; elsewhere the machine's count is all there is.
"""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """CPUs in this process's affinity mask (the machine's count where there is no mask); at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no affinity masks on this platform (macOS, Windows)
        return max(1, os.cpu_count() or 1)
