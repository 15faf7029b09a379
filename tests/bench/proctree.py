"""Peak memory and CPU time of a process tree, sampled from /proc (Linux; no psutil needed).

The benchmarks run resyn-bench in a child process whose work happens in supervised workers:
forkserver children, i.e. grandchildren of the measured process, which ``RUSAGE_CHILDREN`` of
the benchmark does not see (their parent, the fork server, is not waited for). Sampling the
whole tree every ``interval`` seconds sees them; a spike shorter than the interval can be missed.
"""
from __future__ import annotations

import os
import threading

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def proc_table() -> dict[int, tuple[int, int, float]]:
    """pid -> (ppid, rss bytes, cpu seconds) of every readable process."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        # fields[0] is state (field 3); ppid is field 4, utime 14, stime 15, rss 24
        ppid = int(fields[1])
        cpu = (int(fields[11]) + int(fields[12])) / _TICK
        rss = int(fields[21]) * _PAGE
        table[int(name)] = (ppid, rss, cpu)
    return table


class TreeSampler:
    """Peak RSS of a process tree (sum over the tree, largest process, largest descendant of
    the root) and the CPU seconds of each process, while the ``with`` block runs."""

    def __init__(self, root: int, interval: float = 0.2):
        self.root, self.interval = root, interval
        self.peak_sum = 0
        self.peak_by_pid: dict[int, int] = {}
        self.cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @property
    def peak_one(self) -> int:
        """The largest peak RSS of any process in the tree."""
        return max(self.peak_by_pid.values(), default=0)

    @property
    def peak_descendant(self) -> int:
        """The largest peak RSS of any process below the root (0 when none was seen)."""
        return max((rss for pid, rss in self.peak_by_pid.items() if pid != self.root), default=0)

    def _sample(self) -> None:
        table = proc_table()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        tree, stack = [], [self.root]
        while stack:
            pid = stack.pop()
            if pid in table:
                tree.append(pid)
                stack.extend(children.get(pid, []))
        rss = [table[p][1] for p in tree]
        self.peak_sum = max(self.peak_sum, sum(rss))
        for p in tree:
            self.cpu[p] = max(self.cpu.get(p, 0.0), table[p][2])
            self.peak_by_pid[p] = max(self.peak_by_pid.get(p, 0), table[p][1])

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
