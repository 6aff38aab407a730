"""Who an invite code may reveal a challenge to: the rule behind "a code you may not use
answers like an unknown code" (joins by invite code)."""

from __future__ import annotations

from tests.unit.test_challenge import BOB, CAROL, OWNER, T0, active, cause, draft


def test_a_draft_is_revealed_to_its_owner_only() -> None:
    c = draft()
    assert c.invite_reveals_to(OWNER)
    assert not c.invite_reveals_to(BOB)


def test_a_published_public_or_unlisted_challenge_is_revealed_to_anyone() -> None:
    assert active().invite_reveals_to(BOB)
    assert active(visibility="unlisted").invite_reveals_to(BOB)


def test_a_private_challenge_is_revealed_to_the_invited_and_its_participants_only() -> None:
    c = active(BOB, visibility="private", allow_list=[BOB])
    assert c.invite_reveals_to(OWNER) and c.invite_reveals_to(BOB)
    assert not c.invite_reveals_to(CAROL)


def test_a_cancelled_public_challenge_is_still_revealed_so_a_joiner_learns_why() -> None:
    c = active()
    c.cancel(OWNER, False, "rained off", cause(OWNER), T0)
    assert c.invite_reveals_to(BOB)
