"""The order book kept from a snapshot and sequenced deltas (engine/domain/orderbook.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.domain.orderbook import Book, Outcome, SequencedBooks, Touch
from engine.domain.types import Side

D = Decimal
M = "KXSIM-26DEC31-T50"


def followed(sid: int = 4) -> SequencedBooks:
    books = SequencedBooks()
    books.follow(sid)
    assert (
        books.snapshot(
            sid,
            1,
            M,
            [(D("0.08"), D(300)), (D("0.22"), D(333))],
            [
                (D("0.54"), D(20)),
                (D("0.56"), D(146)),
            ],
        )
        is Outcome.APPLIED
    )
    return books


def test_a_snapshot_gives_the_touch_with_the_depth_at_the_best_levels() -> None:
    book = followed().book(M)
    assert book is not None
    assert book.touch() == Touch(bid=D("0.22"), bid_size=D(333), ask=D("0.54"), ask_size=D(20))


def test_deltas_in_sequence_move_the_levels_and_a_level_at_zero_is_gone() -> None:
    books = followed()
    assert books.delta(4, 2, M, Side.SELL, D("0.54"), D(-20)) is Outcome.APPLIED
    assert books.delta(4, 3, M, Side.BUY, D("0.25"), D(7)) is Outcome.APPLIED
    book = books.book(M)
    assert book is not None
    assert book.touch() == Touch(bid=D("0.25"), bid_size=D(7), ask=D("0.56"), ask_size=D(146))
    assert D("0.54") not in book.asks


def test_a_skipped_sequence_number_is_a_gap_that_drops_every_book_until_resubscribed() -> None:
    books = followed()
    assert books.delta(4, 3, M, Side.BUY, D("0.25"), D(7)) is Outcome.GAP
    assert books.sid is None
    assert books.book(M) is None
    assert books.gaps == 1
    # what the old subscription still had in flight is ignored, not a second gap
    assert books.delta(4, 4, M, Side.BUY, D("0.25"), D(1)) is Outcome.IGNORED
    assert books.gaps == 1
    books.follow(5)
    assert books.snapshot(5, 1, M, [(D("0.30"), D(10))], [(D("0.33"), D(5))]) is Outcome.APPLIED
    book = books.book(M)
    assert book is not None
    assert book.touch() == Touch(bid=D("0.30"), bid_size=D(10), ask=D("0.33"), ask_size=D(5))


@pytest.mark.parametrize(
    ("seq", "market", "delta"),
    [(2, "OTHER-MARKET", D(1)), (2, M, D(-400))],
    ids=["delta-of-a-market-without-snapshot", "delta-below-zero"],
)
def test_a_delta_the_book_cannot_take_is_a_gap(seq: int, market: str, delta: Decimal) -> None:
    books = followed()
    assert books.delta(4, seq, market, Side.BUY, D("0.22"), delta) is Outcome.GAP
    assert books.sid is None


def test_a_delta_before_any_snapshot_is_a_gap() -> None:
    books = SequencedBooks()
    books.follow(9)
    assert books.delta(9, 1, M, Side.BUY, D("0.40"), D(1)) is Outcome.GAP


def test_an_empty_side_has_no_touch() -> None:
    assert Book.of([(D("0.40"), D(3))], []).touch() is None
