"""Joining by invite code cannot be used to find codes (rules §7): joins are rate-limited per
user, and a code one may not use answers exactly like a code that does not exist. Users the
challenge admits keep the ordinary answers (full, started, cannot afford)."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from tests.api.test_challenges import Player, Stack, challenge_body, next_midnight, stack

__all__ = ["stack"]  # the fixture, shared with the challenge tests

CODE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def unknown_code() -> str:
    return "".join(secrets.choice(CODE_LETTERS) for _ in range(6))


def join(who: Player, code: str) -> Any:
    return who.post("/challenges/join", json={"invite_code": code, "timezone": "UTC"})


def draft(stack: Stack, owner: Player, **overrides: Any) -> dict[str, Any]:
    r = owner.post("/challenges", json=challenge_body(next_midnight(stack.now()), **overrides))
    assert r.status_code == 201, r.text
    return dict(r.json())


def published(stack: Stack, owner: Player, **overrides: Any) -> dict[str, Any]:
    made = draft(stack, owner, **overrides)
    r = owner.post(f"/challenges/{made['id']}/publish", json={"timezone": "UTC"})
    assert r.status_code == 200, r.text
    return made


def test_a_private_challenge_one_is_not_invited_to_answers_like_an_unknown_code(
    stack: Stack,
) -> None:
    owner, bea, outsider = stack.user(), stack.user(), stack.user()
    made = published(stack, owner, visibility="private", allow_list=[str(bea.id)])
    refused, unknown = join(outsider, made["invite_code"]), join(outsider, unknown_code())
    assert refused.status_code == unknown.status_code == 404, refused.text
    assert refused.json() == unknown.json()
    assert refused.headers["content-type"] == unknown.headers["content-type"]
    assert join(bea, made["invite_code"]).status_code == 201  # the invited still join


def test_a_drafts_code_answers_like_an_unknown_code(stack: Stack) -> None:
    owner, outsider = stack.user(), stack.user()
    made = draft(stack, owner)
    refused, unknown = join(outsider, made["invite_code"]), join(outsider, unknown_code())
    assert refused.status_code == unknown.status_code == 404, refused.text
    assert refused.json() == unknown.json()


def test_an_invited_user_gets_the_ordinary_answers(stack: Stack) -> None:
    owner, bea, cy, poor = stack.user(), stack.user(), stack.user(), stack.user(tokens=50)
    invited = [str(bea.id), str(cy.id), str(poor.id)]
    made = published(stack, owner, visibility="private", allow_list=invited, max_participants=3)
    code = made["invite_code"]
    r = join(poor, code)
    assert r.status_code == 402 and r.json()["code"] == "insufficient_funds", r.text
    assert join(bea, code).status_code == 201
    assert join(bea, code).status_code == 200  # already in: nothing changes
    assert join(cy, code).status_code == 201
    r = join(poor, code)
    assert r.status_code == 409 and r.json()["code"] == "challenge_full", r.text


@pytest.mark.usefixtures("rate_limits_on")
def test_joins_by_invite_code_are_limited_per_user(stack: Stack) -> None:
    prober, other = stack.user(tokens=0), stack.user(tokens=0)
    assert {join(prober, unknown_code()).status_code for _ in range(30)} == {404}
    refused = join(prober, unknown_code())
    assert refused.status_code == 429, refused.text
    assert refused.json()["code"] == "rate_limited" and refused.json()["bucket"] == "join"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert join(other, unknown_code()).status_code == 404  # another user's count is their own
