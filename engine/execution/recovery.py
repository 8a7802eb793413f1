"""Recovery: orders whose outcome the ledger does not know, and fills it does not hold yet.

A ``PENDING_SUBMIT`` / ``UNKNOWN`` / ``PENDING_CANCEL`` order is only ever settled by looking it
up on the venue by client order id, never by waiting (step 6 of the durable protocol); a resend
uses the same id and happens only after the venue's consistency window, while the intent lives.
Fills the ledger misses (a lost stream report, a fill racing a cancel, a crash) are fetched by
trade id or by order until they are in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog

from engine.domain.orders import Order
from engine.domain.types import UNRESOLVED, ClientOrderId, OrderState, Symbol, TradeId
from engine.exceptions import DatabaseUnavailable, NotFound, VenueError
from engine.execution.config import ExecutionConfig
from engine.execution.fill_path import CommittedFacts
from engine.execution.order_log import bound_to, order_fields
from engine.ledger.ledger import Ledger
from engine.metrics import ExecutionMetrics
from engine.venues.base import FillReport, ListsOrders, OrderReport, Venue

log = structlog.get_logger("tradectl.execution")

_OWED_ATTEMPTS = 30
_OWED_LOOKBACK = timedelta(days=2)
#: unresolved orders of one symbol from which one listing is cheaper than a lookup each
#: (Binance weighs ``allOrders`` 20 and one order lookup 4)
LISTING_MIN = 5
#: a listing starts this long before the oldest order it must find: the clocks differ
LISTING_MARGIN = timedelta(minutes=1)
#: orders written per transaction when a listing settles them
LISTING_CHUNK = 1000
#: single lookups in flight at once (different orders; each order still one at a time): a
#: takeover's few orders each wait a venue round trip, side by side rather than in a row
LOOKUPS_AT_ONCE = 8
#: a graceful stop waits for the fills of orders the venue answered for this recently, this
#: long at most: the stream brings them in milliseconds; what faults hold back longer, the next
#: start fetches (the answers' quantities are recorded), and the stop stays short
ANNOUNCED_FILLS_LOOKBACK = timedelta(minutes=1)
ANNOUNCED_FILLS_WAIT_S = 1.5
ANNOUNCED_FILLS_POLL_S = 0.05


@dataclass(slots=True)
class _Owed:
    order: Order
    venue_filled: Decimal
    attempts: int = 0


class Recovery:
    """Resolution and fill recovery, mixed into :class:`~engine.execution.core.Execution`."""

    ledger: Ledger
    venue: Venue
    config: ExecutionConfig
    clock: Callable[[], datetime]
    committed: CommittedFacts
    metrics: ExecutionMetrics
    on_fills: Callable[[Sequence[FillReport]], None]
    symbols: set[Symbol]
    _owed: dict[ClientOrderId, _Owed]
    _in_flight: set[ClientOrderId]
    sent_until: dict[ClientOrderId, datetime]
    _resolve_wakeup: asyncio.Event
    # the send and cancel steps live with the rest of the protocol, in Execution
    _send: Callable[[Order], Coroutine[Any, Any, None]]
    cancel_order: Callable[..., Coroutine[Any, Any, None]]
    #: when this process took the account over (startup recovery): a send by the process before
    #: it may have gone out up to then, whatever the ledger recorded of it
    _took_over_at: datetime | None = None
    #: an order the venue did not have, not to be resent yet: the next lookup is when a resend
    #: may become due (each lookup costs venue weight; a look every resolver pass while a late
    #: original may still land spent a minute's budget and froze every request)
    _look_again_at: dict[ClientOrderId, datetime]

    async def recover(self) -> None:
        """Startup: resolve every non-terminal order, then fetch missing fills.

        Resolution comes first because it attaches venue order ids, which fills fetched by trade
        id (Binance ``myTrades`` carries no client order id) are matched on.
        """
        self._took_over_at = self.clock()
        await self.resolve_unresolved()
        await self.sync_fills()
        # a lookup can show fills the trades query had not; a second pass settles them
        await self.resolve_unresolved()
        # orders closed while their fills could not be fetched (a crash in between, say)
        since = self.clock() - _OWED_LOOKBACK
        for order, venue_filled in await self.ledger.orders.owed_fills(since):
            self._owed[order.client_order_id] = _Owed(order=order, venue_filled=venue_filled)
        await self.settle_owed_fills()

    async def fetch_missing_fills(self, report: OrderReport, order: Order | None) -> None:
        """The venue reports more filled than the ledger holds fills for (a fill report was
        lost, or the fill raced a cancel): bring the order's own trades. The periodic
        ``sync_fills`` cannot: the lost fill may be older than the newest trade the ledger
        already holds, and it only fetches after that one. Until they are in, the order is
        "owed" fills and every resolver pass tries again (a closed order is never looked up
        otherwise)."""
        if order is None or report.filled_quantity <= order.filled_qty:
            return
        self._owed[order.client_order_id] = _Owed(order=order, venue_filled=report.filled_quantity)
        await self._fetch_owed(order.client_order_id)

    async def wait_for_announced_fills(self) -> bool:
        """Until the ledger holds the fills the venue has announced for recent orders (an
        answer's filled quantity beyond the fills recorded): a graceful stop waits for this
        (bounded by its caller) while the user stream is still read. Kalshi's create answer
        counts an order's fills without carrying them; they follow on the stream, and a stop
        in between would leave the ledger short of them until the next start (which fetches
        what is still missing after ``ANNOUNCED_FILLS_WAIT_S``). True when they are all in."""
        since = self.clock() - ANNOUNCED_FILLS_LOOKBACK
        owed: list[tuple[Order, Decimal]] = []
        try:
            async with asyncio.timeout(ANNOUNCED_FILLS_WAIT_S):
                # polled: the fills come through the ledger, from the stream task or a fetch
                while True:
                    owed = await self.ledger.orders.owed_fills(since)
                    if not owed:
                        return True
                    await asyncio.sleep(ANNOUNCED_FILLS_POLL_S)
        except TimeoutError:
            log.info(
                "shutdown.announced_fills_missing",
                client_order_ids=[order.client_order_id for order, _ in owed],
            )
        except DatabaseUnavailable as exc:
            log.warning("shutdown.announced_fills_unchecked", error=str(exc))
        return False

    async def settle_owed_fills(self) -> None:
        for coid in list(self._owed):
            await self._fetch_owed(coid)

    async def _fetch_owed(self, coid: ClientOrderId) -> None:
        owed = self._owed.get(coid)
        if owed is None:
            return
        order = owed.order
        try:
            found = await self.venue.find_order(order.symbol, coid)
            if found.fills:
                self.on_fills(await self.ledger.fills.append(found.fills))
            else:
                await self.sync_fills([order.symbol])
        except VenueError as exc:
            log.info("order.fills_fetch_failed", **order_fields(order), error=str(exc))
        updated = await self.ledger.orders.get(coid)
        if updated is None or updated.filled_qty >= owed.venue_filled:
            self._owed.pop(coid, None)
            return
        owed.attempts += 1
        if owed.attempts >= _OWED_ATTEMPTS:
            # Keep no endless loop of lookups; an operator has to look at this one.
            self._owed.pop(coid, None)
            await self.ledger.incidents.open(
                kind="fills_missing",
                scope=f"symbol:{order.symbol}",
                severity="error",
                message=(
                    f"order {coid} is {owed.venue_filled} filled on the venue but the ledger "
                    f"holds fills for {updated.filled_qty} after {owed.attempts} fetches; check "
                    "the venue's trade history, then `tradectl reconcile --reason '…'`"
                ),
                details={"client_order_id": coid, "venue_filled": str(owed.venue_filled)},
                dedupe_key=f"fills_missing:{coid}",
            )

    # -- resolution ----------------------------------------------------------------------------

    async def resolve_unresolved(self) -> int:
        """Look up every unresolved order not in flight here. Returns how many were looked at.

        Where a symbol has many, one listing of its orders settles what it finds (a venue that
        can list: :class:`~engine.venues.base.ListsOrders`); the rest are looked up one by one,
        which is also what decides an order the venue does not have."""
        now = self.clock()
        unresolved = await self.ledger.orders.unresolved()
        if self._look_again_at or self.sent_until:
            # an order the stream or a listing settled meanwhile owes no later lookup, and no
            # send of it is outstanding
            pending = {o.client_order_id for o in unresolved}
            for coid in self._look_again_at.keys() - pending:
                del self._look_again_at[coid]
            for coid in self.sent_until.keys() - pending:
                del self.sent_until[coid]
        orders = [
            o
            for o in unresolved
            if o.client_order_id not in self._in_flight
            and self._look_again_at.get(o.client_order_id, now) <= now
        ]
        rest = await self._resolve_listed(orders)
        await self._resolve_each(rest)
        return len(orders)

    async def _resolve_each(self, orders: Sequence[Order]) -> None:
        """Look each order up, ``LOOKUPS_AT_ONCE`` at a time. The first failure (the database
        gone, the lease lost) stops the others and is raised as itself, as a lookup in a row
        would raise it."""
        if len(orders) <= 1:
            for order in orders:
                await self._resolve_one(order)
            return
        slots = asyncio.Semaphore(LOOKUPS_AT_ONCE)

        async def one(order: Order) -> None:
            async with slots:
                await self._resolve_one(order)

        try:
            async with asyncio.TaskGroup() as group:
                for order in orders:
                    group.create_task(one(order))
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None

    async def _resolve_listed(self, orders: list[Order]) -> list[Order]:
        """Settle orders from a listing of their symbol; return those it did not settle."""
        if not isinstance(self.venue, ListsOrders):
            return orders
        by_symbol: dict[Symbol, list[Order]] = {}
        for order in orders:
            by_symbol.setdefault(order.symbol, []).append(order)
        rest: list[Order] = []
        for symbol, group in sorted(by_symbol.items()):
            if len(group) < LISTING_MIN:
                rest.extend(group)
                continue
            # the same marker a single lookup holds: no resend or second lookup meanwhile
            wanted = {o.client_order_id for o in group} - self._in_flight
            self._in_flight |= wanted
            try:
                settled = await self._apply_listing(self.venue, symbol, group, wanted)
            finally:
                self._in_flight -= wanted
            rest.extend(o for o in group if o.client_order_id not in settled)
            for order in settled.values():
                if order.state is OrderState.PENDING_CANCEL:
                    await self.cancel_order(order, cause="cancel re-sent after lookup")
        return rest

    async def _apply_listing(
        self, venue: ListsOrders, symbol: Symbol, group: list[Order], wanted: set[ClientOrderId]
    ) -> dict[ClientOrderId, Order]:
        since = min(o.created_at for o in group) - LISTING_MARGIN
        try:
            listed = await venue.orders_since(symbol, since)
        except VenueError as exc:
            log.info("orders.listing_failed", symbol=symbol, error=str(exc))
            return {}
        # oldest first: a client order id listed twice keeps its newest order, as a lookup would
        latest = {r.client_order_id: r for r in listed if r.client_order_id in wanted}
        reports = list(latest.values())
        settled: dict[ClientOrderId, Order] = {}
        before = {o.client_order_id: o.state for o in group}
        for start in range(0, len(reports), LISTING_CHUNK):
            chunk = reports[start : start + LISTING_CHUNK]
            for order in await self.ledger.orders.apply_listed(chunk, cause="lookup (listing)"):
                self.committed.remember(order)
                self.metrics.remember(order)
                settled[order.client_order_id] = order
                if order.state is not before[order.client_order_id]:
                    log.info(
                        "order.resolved",
                        **order_fields(order),
                        from_state=before[order.client_order_id].value,
                        state=order.state.value,
                    )
        if any(latest[c].filled_quantity > o.filled_qty for c, o in settled.items()):
            # more filled on the venue than the ledger has fills for: fetch them by trade id
            await self.sync_fills([symbol])
        return settled

    async def resolve_orders(self, orders: list[Order]) -> None:
        """Look orders up on the venue and apply what it says (the reconciler's repair of
        acknowledged orders whose closing reports were lost): from a listing where a symbol
        has many, one lookup each for the rest."""
        orders = [o for o in orders if o.client_order_id not in self._in_flight]
        for order in await self._resolve_listed(orders):
            await self._resolve_one(order)

    async def _resolve_one(self, order: Order) -> None:
        with bound_to(order):
            await self._resolve_bound(order)

    async def _resolve_bound(self, order: Order) -> None:
        coid = order.client_order_id
        if coid in self._in_flight:
            return
        # One lookup (and possible resend) per order at a time: the resolver, a repeated intent
        # and a cancel can reach here together, and two lookups that both find nothing would
        # both resend the order (a duplicate). The state is re-read under the marker: a copy
        # read before another resolution finished would measure the consistency window from
        # an older attempt.
        self._in_flight.add(coid)
        try:
            updated = await self._look_up(coid)
        finally:
            self._in_flight.discard(coid)
        if updated is not None and updated.state is OrderState.PENDING_CANCEL:
            await self.cancel_order(updated, cause="cancel re-sent after lookup")

    async def _look_up(self, coid: ClientOrderId) -> Order | None:
        order = await self.ledger.orders.get(coid)
        if order is None or order.state.is_terminal:
            return None
        try:
            report = await self.venue.find_order(order.symbol, coid)
        except NotFound:
            if order.state in UNRESOLVED:
                await self._not_found(order)
            else:
                log.warning("order.not_on_venue", state=order.state.value)
            return None
        except VenueError as exc:
            log.info("order.lookup_failed", error=str(exc))
            return None
        # the venue has it: no send of it is outstanding, no later lookup is owed
        self.sent_until.pop(coid, None)
        self._look_again_at.pop(coid, None)
        updated = await self.ledger.orders.apply_report(report, cause="lookup")
        self.metrics.fills(report.fills, updated)
        if updated is None:
            return None
        if updated.state is not order.state:
            log.info("order.resolved", from_state=order.state.value, state=updated.state.value)
        self.committed.remember(updated, report.fills)
        if report.filled_quantity > updated.filled_qty:
            # The venue reports more filled than we hold fills for: fetch them by trade id.
            await self.sync_fills([order.symbol])
        return updated

    async def _not_found(self, order: Order) -> None:
        now = self.clock()
        sent = order.submitted_at or order.created_at
        # The last moment a send of it may have been signed: the last send recorded, when this
        # process's last send of it gave up, or, for an order a previous process had (it may
        # have sent or resent it without recording that before it died), the takeover.
        coid = order.client_order_id
        signed = max(sent, self._took_over_at or sent, self.sent_until.get(coid, sent))
        if now - sent < self.config.consistency_window:
            # it may still appear: look again when the window ends
            self._look_again_at[coid] = sent + self.config.consistency_window
            return
        if now - signed < self.config.late_accept:
            # a send of it may still land: look again when none can
            self._look_again_at[coid] = signed + self.config.late_accept
            return
        self.sent_until.pop(coid, None)
        self._look_again_at.pop(coid, None)
        if order.state is OrderState.PENDING_CANCEL:
            reason = "venue never had the order; cancel requested"
            await self.ledger.orders.expire(coid, reason)
            log.info("order.expired", reason=reason)
            return
        if now >= order.expires_at:
            reason = (
                f"not on the venue after the {self.config.consistency_window.total_seconds():g}s"
                f" consistency window and the intent expired at {order.expires_at.isoformat()};"
                " not resent"
            )
            await self.ledger.orders.expire(coid, reason)
            log.info("order.expired", reason=reason)
            return
        if order.state is OrderState.UNKNOWN:
            order = await self.ledger.orders.transition(
                coid,
                OrderState.PENDING_SUBMIT,
                cause="resubmit: not found after consistency window",
            )
        log.info("order.resubmitting")
        await self._send(order)

    # -- fills ---------------------------------------------------------------------------------

    async def sync_fills(
        self,
        symbols: Iterable[Symbol] | None = None,
        *,
        since: datetime | None = None,
        strict: bool = False,
    ) -> int:
        """Fetch the venue's fills the ledger lacks, per symbol. Returns rows added.

        By default only trades newer than the newest the ledger holds are fetched (cheap, and
        enough for fills lost in a crash). With ``since``, everything after the newest fill older
        than ``since`` is fetched again (duplicates are skipped by trade id): a fill whose report
        came late, behind newer trades, is found too. ``strict`` raises the venue's error
        instead of logging it, for a caller that must know the ledger is complete.
        """
        if since is None:
            start: dict[Symbol, TradeId | None] = dict(await self.ledger.fills.last_trade_ids())
        else:
            start = await self.ledger.fills.trades_before(since)
        wanted = set(symbols) if symbols is not None else self.symbols | set(start)
        if symbols is None:
            wanted |= await self.ledger.orders.non_terminal_symbols()
        added = 0
        for symbol in sorted(wanted):
            after = start.get(symbol)
            while True:
                try:
                    trades = await self.venue.trades_since(symbol, after, limit=500)
                except VenueError as exc:
                    if strict:
                        raise
                    log.warning("fills.fetch_failed", symbol=symbol, error=str(exc))
                    break
                if not trades:
                    break
                inserted = await self.ledger.fills.append(trades)
                self.on_fills(inserted)
                added += len(inserted)
                after = trades[-1].trade_id
                if len(trades) < 500:
                    break
        return added
