"""``peerpush audit verify|report|export|balance`` (also ``python -m projections.audit``).

Read-only against ``DATABASE_URL`` (or the embedded server) and ``DB_SCHEMA``: no migration
is run and nothing is written. ``verify`` exits 0 when clean and 1 on any finding; ``report``
writes the same audit as a printable HTML page (and PDF), with the same exit code.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from uuid import UUID

from adapters.database import database_settings
from adapters.pdf import NoBrowser, print_to_pdf
from api.bootstrap import build_ledger
from application.ledger import Ledger
from domain.errors import NotFound
from projections.audit.balance import balance, parse_as_of, write_text
from projections.audit.chaincheck import parse_head
from projections.audit.export import export
from projections.audit.verify import verify
from projections.pages import audit_page
from projections.position_times import IndexBehind


def decoder() -> Callable[[Any], Any]:
    """The ledger's own event mapper, with no persistence behind it (no connections)."""
    return Ledger({"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper.to_domain_event


def cmd_verify(args: argparse.Namespace) -> int:
    report = verify(database_settings(), decoder(), expect_head=args.expect_head)
    if args.json:
        report.write_json(sys.stdout)
    else:
        report.write_text(sys.stdout)
    return 0 if report.clean else 1


def cmd_report(args: argparse.Namespace) -> int:
    report = verify(database_settings(), decoder(), expect_head=args.expect_head)
    html = Path(args.html)
    html.write_text(audit_page(report, datetime.now(UTC)), encoding="utf-8")
    print(f"audit report written to {html}", file=sys.stderr)
    if args.pdf:
        try:
            print_to_pdf(html, Path(args.pdf))
        except (NoBrowser, subprocess.SubprocessError) as error:
            print(f"audit report: no PDF: {error}", file=sys.stderr)
            return 2
        print(f"audit report printed to {args.pdf}", file=sys.stderr)
    return 0 if report.clean else 1


def cmd_export(args: argparse.Namespace) -> int:
    with ExitStack() as stack:
        out: TextIO = sys.stdout
        if args.output:
            out = stack.enter_context(open(args.output, "w", encoding="utf-8", newline=""))
        try:
            count = export(
                database_settings(),
                decoder(),
                out,
                what=args.what,
                fmt=args.format,
                after=args.after,
                until=args.until,
            )
        except IndexBehind as error:
            print(f"audit export: {error}", file=sys.stderr)
            return 1
    print(f"exported {count:,} {args.what} records", file=sys.stderr)
    return 0


def cmd_balance(args: argparse.Namespace) -> int:
    db = database_settings()
    ledger = build_ledger(db, run_migrations=False)
    try:
        report = balance(db, ledger, args.as_of, user_id=args.user, wallet_id=args.wallet)
    except (NotFound, IndexBehind) as error:
        print(f"audit balance: {error}", file=sys.stderr)
        return 1
    finally:
        ledger.close()
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        write_text(report, sys.stdout)
    return 0


def _time(text: str) -> datetime:
    value = parse_as_of(text)
    if not isinstance(value, datetime):
        raise ValueError("expected a time")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``verify``, ``report``, ``export`` and ``balance`` under ``peerpush audit``."""
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    actions = parser.add_subparsers(dest="audit_command", required=True)

    v = actions.add_parser("verify", help="replay the stream, check invariants, read models, chain")
    v.add_argument("--json", action="store_true", help="the report as JSON")
    v.add_argument(
        "--expect-head",
        metavar="POSITION:HEX",
        type=parse_head,
        help="a chain head printed by an earlier audit: prove the stream unchanged up to it",
    )
    v.set_defaults(func=cmd_verify)

    r = actions.add_parser("report", help="the audit as a printable page an auditor can sign")
    r.add_argument("--html", required=True, metavar="FILE", help="write the page here")
    r.add_argument("--pdf", metavar="FILE", help="also print it to PDF (headless Chromium)")
    r.add_argument("--expect-head", metavar="POSITION:HEX", type=parse_head)
    r.set_defaults(func=cmd_report)

    e = actions.add_parser("export", help="stream decoded events or the journal")
    e.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    e.add_argument("--what", choices=["events", "journal"], default="events")
    e.add_argument("--after", type=int, default=0, metavar="POSITION", help="start after it")
    e.add_argument(
        "--until", type=_time, metavar="TIME", help="up to the last event at or before it"
    )
    e.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    e.set_defaults(func=cmd_export)

    b = actions.add_parser("balance", help="a wallet's balances and lots as of then")
    who = b.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", type=UUID, metavar="ID")
    who.add_argument("--wallet", type=UUID, metavar="ID")
    b.add_argument("--as-of", required=True, type=parse_as_of, metavar="TIME|POSITION")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_balance)
