"""``peerpush``: the ledger's command line (also ``python -m api.cli``).

- ``peerpush migrate`` applies the migrations (event store and read models);
- ``peerpush serve`` (``make run``) serves the HTTP API on http://127.0.0.1:8000 and, in
  development only, runs the projection, settlement and withdrawal workers in-process;
- ``peerpush worker [settlement|withdrawals|cashouts|audit|reconcile|all]`` runs one periodic
  worker, or all of them (the default), as a process of their own until SIGTERM or SIGINT;
  ``audit`` and ``reconcile`` run every ``AUDIT_EVERY`` / ``RECONCILE_EVERY``;
- ``peerpush demo`` plays a short scripted scenario and prints the balances from the read models;
- ``peerpush projections run|status|rebuild [NAME]`` runs the projection worker, shows each
  projection's position and lag, or rebuilds read models from the stream;
- ``peerpush create-admin EMAIL`` makes the registered user with that email an admin;
- ``peerpush reconcile --since DATE [--json]`` compares the ledger with Stripe (exit 1 on any
  mismatch).

Every command that serves, works or writes needs ``ENV`` (``development`` or ``production``)
and refuses to start otherwise; production also needs ``DATABASE_URL`` (and ``serve`` every
secret). The read-only auditor commands (``audit ...``, ``projections status``) run without
``ENV`` so an auditor can point them at a database without the service's settings.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import UTC, datetime

from adapters.database import database_settings
from adapters.logs import configure_logging
from adapters.settings import ConfigError, ProcessSettings, ServiceSettings, StoreSettings
from adapters.users import UserStore
from api import audit_cli, reconcile_cli
from api.bootstrap import build_ledger, build_projector, build_services, migrate
from application.demo import play, write_balances
from application.ports import AdjustableClock
from application.settings import SettingsError
from application.workers import WORKER_NAMES


def cmd_migrate(_: argparse.Namespace) -> int:
    settings = ProcessSettings.from_env()
    configure_logging(settings.log_format, settings.log_level)
    db = database_settings(settings)
    migrate(db)
    print(f"migrations applied to schema {db.schema!r}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the HTTP API (``--workers N``: N server processes, ``adapters.server``: uvloop
    and httptools, metrics added up over the processes); in development the same process
    runs every worker."""
    from adapters.server import serve
    from api.app import create_app

    config = ServiceSettings.from_env()
    configure_logging(config.log_format, config.log_level)
    serve(
        lambda: create_app(config=config),
        "api.app:create_app",
        config,
        args.host,
        args.port,
        processes=args.workers,
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Run periodic workers in this process until SIGTERM or SIGINT (rules §9).

    Several copies may run at once (one per host, or more): each pass is taken by one copy
    under an advisory lock. A stop lets the pass under way finish, then exits 0.
    """
    config = ServiceSettings.from_env()
    configure_logging(config.log_format, config.log_level)
    names = WORKER_NAMES if args.which == "all" else (args.which,)
    services = build_services(config)
    workers = services.workers(names, projections=False)
    signal.signal(signal.SIGTERM, lambda *_: workers.stop.set())
    signal.signal(signal.SIGINT, lambda *_: workers.stop.set())
    try:
        if config.metrics_listen:  # the audit, reconcile, backlog and money-in-flight gauges
            from adapters.metrics import sample_gauges, serve_internal

            serve_internal(config.metrics_listen)
            sample_gauges(services.refresh_gauges, workers.stop)
        print(f"worker {', '.join(names)} running (SIGTERM or Ctrl-C to stop)", flush=True)
        workers.run_until_stopped()
    finally:
        services.close()
    print("worker stopped", flush=True)
    return 0


def cmd_demo(_: argparse.Namespace) -> int:
    """A four-player challenge played in seconds on a test clock, then the balances."""
    settings = ProcessSettings.from_env()
    if settings.production:
        raise ConfigError("the demo writes made-up players: it runs with ENV=development only")
    clock = AdjustableClock(datetime.now(UTC).replace(microsecond=0), frozen=True)
    db = database_settings(settings)
    ledger = build_ledger(db, clock=clock, process=settings)
    projector = build_projector(db, ledger)
    try:
        users = play(ledger, clock)
        projector.catch_up()
        write_balances(users, projector.wallet_rows(list(users.values())), sys.stdout)
    finally:
        projector.close()
        ledger.close()
    return 0


def cmd_projections(args: argparse.Namespace) -> int:
    # status only reads: it runs without ENV, like the auditor's commands
    settings = StoreSettings.from_env() if args.action == "status" else ProcessSettings.from_env()
    db = database_settings(settings)
    ledger = build_ledger(db, process=settings)
    projector = build_projector(db, ledger)
    try:
        if args.action == "status":
            projector.write_status(sys.stdout)
        elif args.action == "rebuild":
            names = [args.name] if args.name else None
            applied = projector.rebuild(names)
            print(f"rebuilt {', '.join(names or ['all projections'])}: {applied} events replayed")
        else:
            if isinstance(settings, ProcessSettings):
                configure_logging(settings.log_format, settings.log_level)
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            signal.signal(signal.SIGINT, lambda *_: stop.set())
            print("projection worker following the stream (Ctrl-C to stop)", flush=True)
            projector.run_forever(stop)
    finally:
        projector.close()
        ledger.close()
    return 0


def cmd_create_admin(args: argparse.Namespace) -> int:
    db = database_settings(ProcessSettings.from_env())
    migrate(db)
    users = UserStore(db)
    try:
        user = users.set_role(args.email, "admin")
    finally:
        users.close()
    if user is None:
        print(f"no user with email {args.email!r}: register first", file=sys.stderr)
        return 1
    print(f"{user.email} ({user.id}) is now an admin")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="peerpush", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = p.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply the migrations").set_defaults(func=cmd_migrate)
    serve = commands.add_parser("serve", help="serve the HTTP API (and, in development, workers)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    serve.set_defaults(func=cmd_serve)
    worker = commands.add_parser(
        "worker", help="run the settlement, withdrawal, cash-out, audit and reconcile workers"
    )
    worker.add_argument("which", nargs="?", default="all", choices=[*WORKER_NAMES, "all"])
    worker.set_defaults(func=cmd_worker)
    commands.add_parser("demo", help="play a scripted scenario, print balances").set_defaults(
        func=cmd_demo
    )
    proj = commands.add_parser("projections", help="run, inspect or rebuild read models")
    proj.add_argument("action", choices=["run", "status", "rebuild"])
    proj.add_argument("name", nargs="?", help="one projection to rebuild (default: all)")
    proj.set_defaults(func=cmd_projections)
    admin = commands.add_parser("create-admin", help="make a registered user an admin")
    admin.add_argument("email")
    admin.set_defaults(func=cmd_create_admin)
    audit_cli.configure(commands.add_parser("audit", help="verify, export or replay the stream"))
    reconcile_cli.configure(
        commands.add_parser("reconcile", help="compare the ledger with Stripe since a date")
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SettingsError as e:
        print(f"peerpush: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
