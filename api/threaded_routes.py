"""Routes whose plain ``def`` endpoints run on a thread pool of our own.

Our endpoints are plain ``def``: the ledger, the read models and psycopg are synchronous.
FastAPI runs such an endpoint through anyio's threadpool, and then validates its answer in a
second trip through that threadpool, because it treats the whole endpoint as blocking. Each
trip costs anyio's bookkeeping on the event loop (capacity limiter, run variables, task
lookups); profiled in process (``bench/request_cpu.py``), the two trips together cost a first
join about as much CPU as the ledger's own work on it (docs/performance.md).

`ThreadedRoute` hands FastAPI an ``async`` endpoint instead, which runs the plain one on a
`ThreadPoolExecutor` through the loop (one hand-off, with the caller's context variables, as
anyio does) and whose answer FastAPI then validates on the loop, where it is plain CPU work.
What the endpoint sees (its parameters, its request, its thread) is unchanged.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi.routing import APIRoute

# anyio's default limit: as many requests in their endpoints at once as before.
THREADS = 40
_pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="peerpush-route")


def in_thread(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """``endpoint`` as a coroutine function that runs it on the route pool. FastAPI reads the
    parameters and their annotations through ``__wrapped__``, so they stay the endpoint's."""

    @functools.wraps(endpoint)
    async def threaded(*args: Any, **kwargs: Any) -> Any:
        call = functools.partial(contextvars.copy_context().run, endpoint, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(_pool, call)

    return threaded


def _blocking(endpoint: Callable[..., Any]) -> bool:
    return (
        inspect.isfunction(endpoint)
        and not inspect.iscoroutinefunction(endpoint)
        and not inspect.isgeneratorfunction(endpoint)
        and not inspect.isasyncgenfunction(endpoint)
    )


class ThreadedRoute(APIRoute):
    """An `APIRoute` whose plain ``def`` endpoint runs through `in_thread`."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, in_thread(endpoint) if _blocking(endpoint) else endpoint, **kwargs)
