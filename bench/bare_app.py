"""The bare FastAPI endpoints the HTTP bench compares the ledger's API with.

Served by the same server, with the same number of processes and the same pool size as
``peerpush serve`` in the same run, so a ratio to these is the cost of our own code:

- ``GET /noop``: returns a constant (the floor under ``/v1/health``);
- ``GET /select``: ``SELECT v FROM bench_t WHERE id = 1`` (the floor under ``GET /v1/wallet``);
- ``POST /insert``: one autocommit single-row INSERT (the floor under a join).

``BARE_DATABASE_URL`` and ``BARE_SCHEMA`` name the database; ``BARE_POOL_SIZE`` the pool.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from fastapi import FastAPI
from psycopg_pool import ConnectionPool

POOL: dict[str, ConnectionPool[Any]] = {}


def setup(url: str, schema: str) -> None:
    """The table both endpoints use, in ``schema`` (created by the bench, dropped with it)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{schema}".bench_t (id bigserial PRIMARY KEY, v int)'
        )
        # Row 1 through the sequence, so the INSERT endpoint's first row is not a duplicate 1.
        conn.execute(
            f'INSERT INTO "{schema}".bench_t (v) SELECT 1 '
            f'WHERE NOT EXISTS (SELECT FROM "{schema}".bench_t WHERE id = 1)'
        )


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    schema = os.environ["BARE_SCHEMA"]
    POOL["db"] = ConnectionPool(
        os.environ["BARE_DATABASE_URL"],
        min_size=1,
        max_size=int(os.environ.get("BARE_POOL_SIZE", "5")),
        kwargs={"autocommit": True, "options": f"-c search_path={schema}"},
        open=True,
    )
    yield
    POOL.pop("db").close()


app = FastAPI(lifespan=lifespan)


@app.get("/noop")
def noop() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/select")
def select() -> dict[str, int]:
    with POOL["db"].connection() as conn:
        row = conn.execute("SELECT v FROM bench_t WHERE id = 1").fetchone()
    return {"v": row[0] if row else 0}


@app.post("/insert", status_code=201)
def insert() -> dict[str, int]:
    with POOL["db"].connection() as conn:
        row = conn.execute("INSERT INTO bench_t (v) VALUES (1) RETURNING id").fetchone()
    return {"id": row[0] if row else 0}
