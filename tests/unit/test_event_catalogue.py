"""docs/events.md documents every event the ledger records, and nothing that no longer exists.

Events are discovered, not listed: every module of the ``domain`` package is imported, every
subclass of ``LedgerAggregate`` found in them is an aggregate, and every class nested in an
aggregate that can mutate it and has a ``TOPIC`` is an event. A new event (or aggregate) is
therefore checked against the catalogue without anyone touching this file.

The catalogue gives each event a ``### Aggregate.Event`` heading followed by
``- **Topic:** `...` ``, ``- **Class version:** N``, a fields table whose rows start with
``| `field` |`` and a version-history table whose rows start with ``| vN |``.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import re
from pathlib import Path

import pytest
from eventsourcing.domain import CanMutateAggregate

import domain
from domain.aggregate import LedgerAggregate, LedgerCreated, LedgerEvent
from domain.rules import ChallengeTerms

CATALOGUE = Path(__file__).resolve().parents[2] / "docs" / "events.md"

# Columns of the events table, or recorded by the library for every event: documented once in
# the catalogue's introduction, not per event.
LIBRARY_FIELDS = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic"})
COMMON_SECTION = "Fields common to every event"
TERMS_SECTION = "Challenge terms"

HEADING = re.compile(r"^(#{1,3}) (.+?)[ \t]*$", re.MULTILINE)
EVENT_HEADING = re.compile(r"^[A-Za-z_]\w*\.[A-Za-z_]\w*$")
TOPIC_LINE = re.compile(r"^- \*\*Topic:\*\* `([^`]+)`[ \t]*$", re.MULTILINE)
VERSION_LINE = re.compile(r"^- \*\*Class version:\*\* (\d+)[ \t]*$", re.MULTILINE)
FIELD_ROW = re.compile(r"^\| `(\w+)` \|", re.MULTILINE)
HISTORY_ROW = re.compile(r"^\| v(\d+) \|", re.MULTILINE)
TOPIC_MENTION = re.compile(r"peerpush:[\w.]+\w")
CODE_REFERENCE = re.compile(r"`([A-Za-z_]\w*)\.([A-Za-z_]\w*)`")


def discover_aggregates() -> list[type[LedgerAggregate]]:
    found: set[type[LedgerAggregate]] = set()
    for info in pkgutil.walk_packages(domain.__path__, prefix=f"{domain.__name__}."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, LedgerAggregate)
                and obj is not LedgerAggregate
            ):
                found.add(obj)
    return sorted(found, key=lambda cls: cls.__qualname__)


def discover_events(aggregate: type[LedgerAggregate]) -> list[type[CanMutateAggregate]]:
    events: set[type[CanMutateAggregate]] = set()
    for name in dir(aggregate):
        obj = getattr(aggregate, name)
        if (
            isinstance(obj, type)
            and issubclass(obj, CanMutateAggregate)
            and getattr(obj, "TOPIC", None)
        ):
            events.add(obj)
    return sorted(events, key=lambda cls: cls.__qualname__)


AGGREGATES = discover_aggregates()
EVENTS = sorted(
    {event for aggregate in AGGREGATES for event in discover_events(aggregate)},
    key=lambda cls: cls.__qualname__,
)
BY_NAME = {event.__qualname__: event for event in EVENTS}


def field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


COMMON_FIELDS = (field_names(LedgerEvent) | field_names(LedgerCreated)) - LIBRARY_FIELDS


def own_fields(event: type) -> set[str]:
    """The event's fields beyond the library's and the cause every event carries."""
    return field_names(event) - LIBRARY_FIELDS - COMMON_FIELDS


def read_catalogue() -> tuple[str, list[tuple[str, str]]]:
    """The catalogue's text and its (heading, body) sections, body up to the next heading."""
    text = CATALOGUE.read_text(encoding="utf-8")
    matches = list(HEADING.finditer(text))
    ends = [m.start() for m in matches[1:]] + [len(text)]
    return text, [(m.group(2), text[m.end() : end]) for m, end in zip(matches, ends, strict=True)]


TEXT, SECTIONS = read_catalogue()
SECTION = dict(SECTIONS)


def event_section(event: type) -> str:
    name = event.__qualname__
    assert name in SECTION, f"docs/events.md has no '### {name}' section: document the event"
    return SECTION[name]


def only(pattern: re.Pattern[str], body: str, what: str, event: type) -> str:
    found = pattern.findall(body)
    assert len(found) == 1, f"{event.__qualname__}: expected one {what} line, found {found}"
    return str(found[0])


def test_discovery_finds_every_aggregate_and_their_events() -> None:
    names = {aggregate.__qualname__ for aggregate in AGGREGATES}
    assert {"Wallet", "Challenge", "Verification", "InviteCode"} <= names
    for aggregate in AGGREGATES:
        assert discover_events(aggregate), f"{aggregate.__qualname__} has no events"


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.__qualname__)
def test_every_event_carries_its_cause(event: type) -> None:
    assert issubclass(event, (LedgerEvent, LedgerCreated))


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.__qualname__)
def test_every_event_topic_is_documented_in_its_own_section(event: type) -> None:
    topic = event.TOPIC  # type: ignore[attr-defined]
    assert topic in TEXT
    assert only(TOPIC_LINE, event_section(event), "topic", event) == topic


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.__qualname__)
def test_every_event_field_is_documented_and_no_documented_field_is_stale(event: type) -> None:
    documented = set(FIELD_ROW.findall(event_section(event)))
    actual = own_fields(event)
    assert documented == actual, (
        f"{event.__qualname__}: undocumented {sorted(actual - documented)}, "
        f"stale {sorted(documented - actual)}"
    )


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.__qualname__)
def test_documented_class_version_and_history_match_the_class(event: type) -> None:
    body = event_section(event)
    version = getattr(event, "class_version", 1)
    assert int(only(VERSION_LINE, body, "class version", event)) == version
    history = [int(v) for v in HISTORY_ROW.findall(body)]
    assert history == list(range(1, version + 1)), (
        f"{event.__qualname__}: version history {history} should list v1..v{version}"
    )


def test_topics_are_unique() -> None:
    topics = [event.TOPIC for event in EVENTS]  # type: ignore[attr-defined]
    topics += [aggregate.TOPIC for aggregate in AGGREGATES]  # type: ignore[attr-defined]
    duplicates = sorted({t for t in topics if topics.count(t) > 1})
    assert not duplicates


def test_headings_are_unique() -> None:
    headings = [heading for heading, _ in SECTIONS]
    assert len(headings) == len(set(headings)), "a heading appears twice"


def test_no_section_documents_an_event_that_no_longer_exists() -> None:
    stale = [h for h, _ in SECTIONS if EVENT_HEADING.match(h) and h not in BY_NAME]
    assert not stale, f"docs/events.md documents missing event classes: {stale}"


def test_no_topic_in_the_catalogue_is_stale() -> None:
    known = {event.TOPIC for event in EVENTS}  # type: ignore[attr-defined]
    known |= {aggregate.TOPIC for aggregate in AGGREGATES}  # type: ignore[attr-defined]
    stale = sorted(set(TOPIC_MENTION.findall(TEXT)) - known)
    assert not stale, f"docs/events.md names topics no class has: {stale}"


def test_no_reference_to_an_event_of_an_aggregate_is_stale() -> None:
    aggregates = {aggregate.__qualname__ for aggregate in AGGREGATES}
    stale = sorted(
        f"{owner}.{name}"
        for owner, name in CODE_REFERENCE.findall(TEXT)
        if owner in aggregates and f"{owner}.{name}" not in BY_NAME
    )
    assert not stale, f"docs/events.md refers to missing events: {stale}"


def test_fields_common_to_every_event_are_documented_once() -> None:
    documented = set(FIELD_ROW.findall(SECTION[COMMON_SECTION]))
    assert COMMON_FIELDS | LIBRARY_FIELDS - {"originator_id", "originator_version"} <= documented


def test_challenge_terms_keys_are_documented_exactly() -> None:
    documented = set(FIELD_ROW.findall(SECTION[TERMS_SECTION]))
    assert documented == field_names(ChallengeTerms)
