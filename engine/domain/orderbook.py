"""Order books kept from a venue's snapshots and sequenced deltas (Kalshi's ``orderbook_delta``).

A subscription (``sid``) numbers every message it sends, snapshots and deltas of all its markets
alike, one after the other (``seq``). A message that does not follow the last one means some
were lost: every book of the subscription may be wrong, so they are all dropped and the caller
resubscribes for fresh snapshots. Until the new subscription's id is known, messages of the old
one are ignored (they were in flight). A delta that would leave a negative size, or one for a
market that never had a snapshot, is treated the same way: the book cannot be trusted.

Sizes are per price level; the touch is the best level of each side, and its size is the depth
visible there (what the liquidity check may take a fraction of). Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from engine.domain.types import Side

_ZERO = Decimal(0)


class Outcome(StrEnum):
    APPLIED = "applied"
    #: messages were lost (or the book went inconsistent): resubscribe for a fresh snapshot
    GAP = "gap"
    #: a message of a subscription that is no longer followed (in flight before a resubscribe)
    IGNORED = "ignored"


@dataclass(frozen=True, slots=True)
class Touch:
    """The best bid and ask with the size resting at each."""

    bid: Decimal
    bid_size: Decimal
    ask: Decimal
    ask_size: Decimal


@dataclass(slots=True)
class Book:
    """One market's levels, price -> size, per side (bids buy, asks sell)."""

    bids: dict[Decimal, Decimal] = field(default_factory=dict)
    asks: dict[Decimal, Decimal] = field(default_factory=dict)

    @classmethod
    def of(
        cls, bids: Iterable[tuple[Decimal, Decimal]], asks: Iterable[tuple[Decimal, Decimal]]
    ) -> Book:
        book = cls()
        for levels, side in ((bids, book.bids), (asks, book.asks)):
            for price, size in levels:
                if size < 0:
                    raise ValueError(f"a level's size cannot be negative: {size} at {price}")
                if size > 0:
                    side[price] = side.get(price, _ZERO) + size
        return book

    def change(self, side: Side, price: Decimal, delta: Decimal) -> bool:
        """Add ``delta`` at ``price``; ``False`` (nothing changed) when that would go negative."""
        levels = self.bids if side is Side.BUY else self.asks
        size = levels.get(price, _ZERO) + delta
        if size < 0:
            return False
        if size == 0:
            levels.pop(price, None)
        else:
            levels[price] = size
        return True

    def touch(self) -> Touch | None:
        """``None`` while either side is empty (no price to quote on that side)."""
        if not self.bids or not self.asks:
            return None
        bid = max(self.bids)
        ask = min(self.asks)
        return Touch(bid=bid, bid_size=self.bids[bid], ask=ask, ask_size=self.asks[ask])


@dataclass(slots=True)
class SequencedBooks:
    """The books of one subscription, checked message by message against its sequence."""

    #: the subscription followed; ``None`` after a gap until the next one is known
    sid: int | None = None
    last_seq: int | None = None
    books: dict[str, Book] = field(default_factory=dict)
    #: gaps seen since this object was made
    gaps: int = 0

    def follow(self, sid: int) -> None:
        """A (re)subscription was confirmed as ``sid``: start afresh, its snapshots follow."""
        self.sid = sid
        self.last_seq = None
        self.books.clear()

    def snapshot(
        self,
        sid: int,
        seq: int,
        market: str,
        bids: Iterable[tuple[Decimal, Decimal]],
        asks: Iterable[tuple[Decimal, Decimal]],
    ) -> Outcome:
        outcome = self._next(sid, seq, first_may_start=True)
        if outcome is Outcome.APPLIED:
            self.books[market] = Book.of(bids, asks)
        return outcome

    def delta(
        self, sid: int, seq: int, market: str, side: Side, price: Decimal, delta: Decimal
    ) -> Outcome:
        outcome = self._next(sid, seq, first_may_start=False)
        if outcome is not Outcome.APPLIED:
            return outcome
        book = self.books.get(market)
        if book is None or not book.change(side, price, delta):
            return self._gap()
        return outcome

    def book(self, market: str) -> Book | None:
        return self.books.get(market)

    def markets(self) -> Mapping[str, Book]:
        return self.books

    def _next(self, sid: int, seq: int, *, first_may_start: bool) -> Outcome:
        if self.sid is None or sid != self.sid:
            return Outcome.IGNORED
        if self.last_seq is None:
            if not first_may_start:
                return self._gap()  # a delta before any snapshot: its base is unknown
        elif seq != self.last_seq + 1:
            return self._gap()
        self.last_seq = seq
        return Outcome.APPLIED

    def _gap(self) -> Outcome:
        self.gaps += 1
        self.sid = None
        self.last_seq = None
        self.books.clear()
        return Outcome.GAP
