"""``peerpush reconcile --since DATE [--json]``: the ledger against Stripe (rules §6).

Lists, through the configured Stripe adapter (``STRIPE_MODE``, ``STRIPE_API_KEY``,
``STRIPE_API_BASE``), Stripe's charges, refunds, transfers and disputes created since DATE
and matches them with the ledger's deposits, refunds, cash-outs and written-off lots by Stripe
id. Prints the matched totals and every mismatch; exits 0 when everything matches, 1 on any
mismatch. Reads only; writes nothing. In the embedded default (``STRIPE_MODE=simulated``) it
reconciles against the simulated Stripe, whose money is kept in the service's database.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from adapters.database import database_settings
from adapters.payments import build_payment_gateway
from adapters.settings import ServiceSettings
from api.bootstrap import build_ledger
from application.reconcile import reconcile_ledger


def parse_since(value: str) -> datetime:
    """An ISO 8601 date or time; UTC when it names no offset."""
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {value!r}") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def cmd_reconcile(args: argparse.Namespace) -> int:
    config = ServiceSettings.from_env()
    db = database_settings(config)
    gateway: Any = build_payment_gateway(config, db)
    ledger = build_ledger(db, run_migrations=False)
    try:
        report = reconcile_ledger(args.since, ledger, gateway)
    finally:
        ledger.close()
    if args.json:
        json.dump(report.as_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        report.write_text(sys.stdout)
    return 0 if report.ok else 1


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--since", required=True, type=parse_since, metavar="DATE")
    parser.add_argument("--json", action="store_true", help="the report as JSON")
    parser.set_defaults(func=cmd_reconcile)
