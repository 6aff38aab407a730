"""Who finishes and how a pool is divided (rules §5): hand-computed splits."""

from __future__ import annotations

from uuid import UUID

import pytest

from domain.settlement import finishes, split_pool

# Canonical hex is fixed-width, so string order and 128-bit integer order agree; these ids
# are listed out of order on purpose so a split that kept the caller's order would fail.
LOW = UUID("00000000-0000-4000-8000-000000000001")
MID = UUID("7fffffff-ffff-4fff-bfff-ffffffffffff")
HIGH = UUID("ffffffff-ffff-4fff-bfff-fffffffffffe")


def test_a_pool_of_500_over_three_finishers_gives_the_extra_tokens_to_the_lowest_ids() -> None:
    split = split_pool(500, 0, [HIGH, LOW, MID])

    assert split.shares == {LOW: 167, MID: 167, HIGH: 166}
    assert (split.fee, split.forfeited, split.pool) == (0, 0, 500)


def test_the_remainder_order_is_ascending_128_bit_integer_order() -> None:
    a, b, c, d = (UUID(int=n) for n in (3, 1, 2**127, 2))
    split = split_pool(10 + 3, 0, [a, b, c, d])

    # 13 // 4 = 3 remainder 1: only the smallest integer id (1) gets the extra token.
    assert split.shares == {b: 4, d: 3, a: 3, c: 3}


def test_a_pool_that_divides_evenly_has_no_extra_tokens() -> None:
    assert split_pool(600, 0, [LOW, MID, HIGH]).shares == {LOW: 200, MID: 200, HIGH: 200}


def test_a_finisher_named_twice_is_counted_once() -> None:
    assert split_pool(100, 0, [LOW, LOW, HIGH]).shares == {LOW: 50, HIGH: 50}


def test_the_fee_is_the_floor_of_pool_times_bps_over_ten_thousand() -> None:
    # 1001 × 250 / 10,000 = 25.025 → 25; the 976 left split 488 / 488.
    split = split_pool(1001, 250, [LOW, HIGH])

    assert split.fee == 25
    assert split.shares == {LOW: 488, HIGH: 488}


def test_the_fee_rounds_down_to_zero_on_a_tiny_pool() -> None:
    # 39 × 250 / 10,000 = 0.975 → 0.
    split = split_pool(39, 250, [LOW, MID, HIGH])

    assert split.fee == 0
    assert split.shares == {LOW: 13, MID: 13, HIGH: 13}


def test_fee_and_shares_always_add_up_to_the_pool() -> None:
    split = split_pool(12_345, 333, [LOW, MID, HIGH])

    # 12,345 × 333 / 10,000 = 411.0885 → 411; 11,934 / 3 = 3,978 each.
    assert split.fee == 411
    assert split.shares == {LOW: 3978, MID: 3978, HIGH: 3978}
    assert split.fee + sum(split.shares.values()) == 12_345


def test_when_nobody_finishes_the_whole_pool_is_forfeited_and_no_fee_is_taken() -> None:
    split = split_pool(1_600, 500, [])

    assert (split.forfeited, split.fee, split.shares) == (1_600, 0, {})


def test_an_empty_pool_with_finishers_gives_everyone_zero() -> None:
    assert split_pool(0, 0, [LOW, HIGH]).shares == {LOW: 0, HIGH: 0}


@pytest.mark.parametrize(
    ("expected", "accepted", "grace", "done"),
    [
        (5, 5, 0, True),
        (5, 4, 0, False),
        (5, 4, 1, True),
        (5, 3, 1, False),
        (5, 3, 2, True),
        (3, 0, 5, True),
        (0, 0, 0, True),
    ],
)
def test_a_participant_finishes_when_no_more_slots_are_missed_than_the_grace(
    expected: int, accepted: int, grace: int, done: bool
) -> None:
    assert finishes(expected, accepted, grace) is done
