"""The machine's CPU during one wrk run, split by who spent it.

The in-process figures (``bench/request_cpu.py``) count only the app's own CPU. Over HTTP a
request also costs PostgreSQL (its backends and background processes), wrk, and the threads
of the app no request runs on (the projection worker, the cache follower, the group commit's
writer). Summed over a run and divided by the requests it counted, each group's CPU says what
a request costs the two cores as a whole, and so what bounds its rate.

Groups are process trees: the server's (its workers are its children), and PostgreSQL's (the
postmaster of the server the bench connects to, found from a backend's parent: with the
embedded default only this bench uses it; with ``DATABASE_URL`` on a shared server, others'
work is in it too). wrk's is the bench's children's CPU (``RUSAGE_CHILDREN``: wrk is the only
child that exits during a run). A process that ends during the run loses what it spent since
the start; one that starts during it counts whole.
"""

from __future__ import annotations

import resource
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psutil
import psycopg


def process_tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def postmaster_of(url: str) -> int:
    """The PostgreSQL server's main process (the parent of our backend); it must run here."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(psutil.Process(int(row[0])).ppid())


def _spent(processes: list[psutil.Process]) -> dict[int, float]:
    found = {}
    for p in processes:
        try:
            times = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        found[p.pid] = times.user + times.system
    return found


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def cpu_split(groups: dict[str, Callable[[], list[psutil.Process]]]) -> Iterator[dict[str, float]]:
    """CPU seconds spent by each group (and by ``wrk``) while the block runs, filled in the
    dictionary it yields when the block ends."""
    before = {name: _spent(find()) for name, find in groups.items()}
    children = _children_cpu()
    spent: dict[str, float] = {}
    yield spent
    for name, find in groups.items():
        now = _spent(find())
        spent[name] = sum(cpu - before[name].get(pid, 0.0) for pid, cpu in now.items())
    spent["wrk"] = _children_cpu() - children


def per_request(spent: dict[str, float], requests: int) -> dict[str, float]:
    """Milliseconds of CPU per request, by group."""
    return {name: round(1000 * cpu / max(requests, 1), 3) for name, cpu in spent.items()}
