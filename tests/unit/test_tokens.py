"""Token amounts and lots (rules §1): validation, FIFO debits, and tokens coming back."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import pytest

from domain.errors import InsufficientFunds, InvalidAmount
from domain.tokens import Lot, part_of, positive_tokens, returning, take_capped, take_fifo

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def lot_id(n: int) -> UUID:
    return UUID(int=n)


def lot(n: int, remaining: int, *, amount: int = 1_000, **flags: bool | int) -> Lot:
    return Lot(
        lot_id=lot_id(n),
        seq=n,
        source="deposit",
        amount=amount,
        remaining=remaining,
        created_at=T0,
        **flags,  # type: ignore[arg-type]
    )


# --- positive_tokens ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "amount",
    [0, -1, -500, 1.0, 2.5, True, False, "100", None, 2**53 + 1],
    ids=[
        "zero",
        "minus-one",
        "negative",
        "float",
        "fraction",
        "true",
        "false",
        "str",
        "none",
        "2^53+1",
    ],
)
def test_positive_tokens_refuses_anything_but_a_positive_int_up_to_2_pow_53(
    amount: object,
) -> None:
    with pytest.raises(InvalidAmount):
        positive_tokens(amount)


@pytest.mark.parametrize("amount", [1, 2**53])
def test_positive_tokens_accepts_the_bounds_one_and_2_pow_53(amount: int) -> None:
    assert positive_tokens(amount) == amount


def test_positive_tokens_names_the_field_in_its_refusal() -> None:
    with pytest.raises(InvalidAmount, match="cents paid"):
        positive_tokens(0, what="cents paid")


# --- take_fifo ---------------------------------------------------------------------------


def test_a_debit_consumes_the_oldest_lots_first_and_records_what_it_took() -> None:
    lots = [lot(1, 100), lot(2, 200), lot(3, 300)]

    assert take_fifo(lots, 250, available=600) == ((lot_id(1), 100), (lot_id(2), 150))


def test_a_debit_that_fits_in_the_first_lot_touches_no_other() -> None:
    lots = [lot(1, 100), lot(2, 200)]

    assert take_fifo(lots, 40, available=300) == ((lot_id(1), 40),)


def test_a_debit_skips_empty_frozen_and_written_off_lots() -> None:
    lots = [
        lot(1, 0),
        lot(2, 500, frozen=True),
        lot(3, 70),
        lot(4, 500, written_off=True),
        lot(5, 100),
    ]

    assert take_fifo(lots, 120, available=170) == ((lot_id(3), 70), (lot_id(5), 50))


def test_a_debit_of_everything_available_empties_every_usable_lot() -> None:
    lots = [lot(1, 100), lot(2, 200)]

    assert take_fifo(lots, 300, available=300) == ((lot_id(1), 100), (lot_id(2), 200))


def test_a_debit_larger_than_available_is_refused_with_the_numbers() -> None:
    with pytest.raises(InsufficientFunds) as refused:
        take_fifo([lot(1, 100), lot(2, 50)], 151, available=150)

    assert (refused.value.needed, refused.value.available) == (151, 150)


def test_a_debit_is_refused_when_only_frozen_tokens_would_cover_it() -> None:
    lots = [lot(1, 100), lot(2, 500, frozen=True)]

    # A stale ``available`` that counts the frozen lot must still not let the debit through.
    with pytest.raises(InsufficientFunds) as refused:
        take_fifo(lots, 300, available=600)

    assert refused.value.available == 100


def test_a_capped_debit_takes_only_what_is_available() -> None:
    lots = [lot(1, 30), lot(2, 20)]

    assert take_capped(lots, 100, available=50) == ((lot_id(1), 30), (lot_id(2), 20))


def test_a_capped_debit_from_an_empty_wallet_takes_nothing() -> None:
    assert take_capped([lot(1, 0)], 100, available=0) == ()


# --- part_of and returning ---------------------------------------------------------------


def test_part_of_a_hold_refills_lots_in_the_order_they_were_consumed() -> None:
    taken = ((lot_id(1), 100), (lot_id(2), 150), (lot_id(3), 50))

    assert part_of(taken, 180) == ((lot_id(1), 100), (lot_id(2), 80))


def test_part_of_a_hold_accepts_stored_pairs_with_string_ids() -> None:
    stored = [[str(lot_id(7)), 40], [str(lot_id(8)), 60]]

    assert part_of(stored, 50) == ((lot_id(7), 40), (lot_id(8), 10))


def test_all_of_a_hold_comes_back_whole_and_none_of_it_is_empty() -> None:
    taken = ((lot_id(1), 100), (lot_id(2), 150))

    assert part_of(taken, 250) == taken
    assert part_of(taken, 0) == ()


def test_tokens_returning_to_a_clean_lot_only_refill_it() -> None:
    lots = {str(lot_id(1)): lot(1, 0)}

    assert returning(lots, [(lot_id(1), 75)]) == ((lot_id(1), 75, 0, False),)


def test_tokens_returning_to_a_lot_with_a_loss_first_recover_the_loss_then_refill() -> None:
    lots = {str(lot_id(1)): lot(1, 0, loss=30), str(lot_id(2)): lot(2, 10)}

    assert returning(lots, [(lot_id(1), 50), (lot_id(2), 5)]) == (
        (lot_id(1), 20, 30, False),
        (lot_id(2), 5, 0, False),
    )


def test_a_loss_is_recovered_only_once_across_two_returns_to_the_same_lot() -> None:
    lots = {str(lot_id(1)): lot(1, 0, loss=30)}

    assert returning(lots, [(lot_id(1), 20), (lot_id(1), 20)]) == (
        (lot_id(1), 0, 20, False),
        (lot_id(1), 10, 10, False),
    )


def test_tokens_smaller_than_the_loss_are_all_recovered_and_refill_nothing() -> None:
    lots = {str(lot_id(1)): lot(1, 0, loss=100)}

    assert returning(lots, [(lot_id(1), 40)]) == ((lot_id(1), 0, 40, False),)


def test_tokens_returning_to_a_frozen_lot_are_marked_to_arrive_frozen() -> None:
    lots = {str(lot_id(1)): lot(1, 0, frozen=True), str(lot_id(2)): lot(2, 0)}

    assert returning(lots, [(lot_id(1), 30), (lot_id(2), 20)]) == (
        (lot_id(1), 30, 0, True),
        (lot_id(2), 20, 0, False),
    )


def test_a_frozen_lot_is_usable_again_only_when_neither_frozen_nor_written_off() -> None:
    assert lot(1, 10).usable
    assert not lot(1, 10, frozen=True).usable
    assert not lot(1, 10, written_off=True).usable
