"""The execution coroutine: intents in, each decision an exchange order at most once.

This is ARCHITECTURE.md's durable protocol, one phase per foreign call:

1. decide (the strategy) → 2. risk verdicts (pure) → 3. RESERVE transaction (fence, controls,
decision, order ``PENDING_SUBMIT``, first event) → 4. final gate in memory → 5. submit with the
reserved client order id, classified as accepted (ACK transaction) / refused (``REJECTED``) /
ambiguous (``UNKNOWN``) → 6. resolution of ``PENDING_SUBMIT`` / ``UNKNOWN`` orders, always by a
lookup before any resubmission → 7. fills appended idempotently by trade id.

Fills and order reports from the user stream are applied by :class:`FillPath` in their own task,
so execution work never waits behind intents or market data.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

import structlog

from engine.crashpoints import NO_CRASH, CrashPoint, CrashPoints, SimulatedCrash
from engine.domain.ids import client_order_id, decision_id
from engine.domain.intents import Buy, Cancel, Hold, Intent, OrderIntent, Sell, intent_kind
from engine.domain.orders import Order, target_state
from engine.domain.risk import RiskAssessment, Verdict
from engine.domain.types import (
    AccountId,
    Asset,
    ClientOrderId,
    ControlKind,
    ControlScope,
    DecisionOutcome,
    OrderState,
    Symbol,
    VerdictResult,
    utc_now,
)
from engine.exceptions import (
    Ambiguous,
    AuthFailed,
    DatabaseUnavailable,
    Definitive,
    LeaseLost,
    NotFound,
    RateLimited,
    StateConflict,
    VenueError,
)
from engine.ledger.ledger import Ledger
from engine.ledger.records import DecisionRecord, Reservation, ReserveStatus
from engine.tasks import wait_event
from engine.venues.base import (
    BalanceReport,
    FillReport,
    InstrumentRules,
    OrderReport,
    OrderRequest,
    StreamReconnected,
    UserEvent,
    Venue,
)

log = structlog.get_logger("tradectl.execution")

#: states whose outcome on the venue is not known to the ledger and must be looked up
UNRESOLVED = frozenset({OrderState.PENDING_SUBMIT, OrderState.UNKNOWN, OrderState.PENDING_CANCEL})


class RiskGate(Protocol):
    """Pre-trade checks at the execution boundary (see :mod:`engine.risk_gate`)."""

    async def prepare(self) -> None:
        """Before a batch: take in every reservation and fill the ledger has."""
        ...

    def assess(self, intent: OrderIntent, now: datetime) -> RiskAssessment: ...

    def reserved(self) -> None:
        """After a batch's reserve transaction committed."""
        ...

    def recheck(self, order: Order, now: datetime) -> RiskAssessment:
        """The final gate: freshness and limits again on the newest state, before the wire."""
        ...

    def on_submitted(self, order: Order, now: datetime) -> None: ...


class Lease(Protocol):
    @property
    def holder(self) -> str: ...

    @property
    def epoch(self) -> int: ...

    @property
    def lost(self) -> bool: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionConfig:
    account: AccountId
    order_id_prefix: str
    consistency_window: timedelta = timedelta(seconds=3)
    resolve_interval_s: float = 1.0
    max_batch: int = 64
    #: orders on their way to the venue at once (submit + ACK write)
    max_in_flight: int = 32


class Execution:
    """One per account. Strategies call :meth:`submit_intent`; :meth:`run` does the rest."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        venue: Venue,
        gate: RiskGate,
        lease: Lease,
        config: ExecutionConfig,
        clock: Callable[[], datetime] = utc_now,
        crash: CrashPoints = NO_CRASH,
        on_fills: Callable[[Sequence[FillReport]], None] | None = None,
    ) -> None:
        self.ledger = ledger
        self.venue = venue
        self.gate = gate
        self.lease = lease
        self.config = config
        self.clock = clock
        self.crash = crash
        #: told about every fill this process sees (the risk gate's positions); must dedupe by
        #: trade id, because the same fill arrives by ack, stream and trade query
        self.on_fills = on_fills or (lambda fills: None)
        self._intents: asyncio.Queue[Intent] = asyncio.Queue()
        self._denials: list[DecisionRecord] = []
        self._owed: dict[ClientOrderId, _Owed] = {}
        self._rules: dict[Symbol, InstrumentRules] = {}
        self.committed = CommittedFacts()
        self._outstanding = 0
        self._idle = asyncio.Condition()
        self._send_slots = asyncio.Semaphore(config.max_in_flight)
        # Orders this process is sending right now: the resolver must not look them up and
        # resubmit while the first request may still be on its way.
        self._in_flight: set[ClientOrderId] = set()
        self._resolve_wakeup = asyncio.Event()
        self.symbols: set[Symbol] = set()
        self.stopped_reason: str | None = None

    # -- intake --------------------------------------------------------------------------------

    async def submit_intent(self, intent: Intent) -> None:
        """The strategies' sink. Never blocks on the venue: the intent is queued for :meth:`run`."""
        await self._intents.put(intent)

    @property
    def queued(self) -> int:
        return self._intents.qsize()

    async def drain(self) -> None:
        """Wait until every queued intent is processed and every send has its answer."""
        await self._intents.join()
        async with self._idle:
            await self._idle.wait_for(lambda: self._outstanding == 0)

    # -- lifecycle -----------------------------------------------------------------------------

    async def recover(self) -> None:
        """Startup: resolve every non-terminal order, then fetch missing fills.

        Resolution comes first because it attaches venue order ids, which fills fetched by trade
        id (Binance ``myTrades`` carries no client order id) are matched on.
        """
        await self.resolve_unresolved()
        await self.sync_fills()
        # a lookup can show fills the trades query had not; a second pass settles them
        await self.resolve_unresolved()
        # orders closed while their fills could not be fetched (a crash in between, say)
        since = self.clock() - _OWED_LOOKBACK
        for order, venue_filled in await self.ledger.orders.owed_fills(since):
            self._owed[order.client_order_id] = _Owed(order=order, venue_filled=venue_filled)
        await self.settle_owed_fills()

    async def run(self) -> None:
        """Process intents in batches until cancelled or the lease is lost.

        Sends are pipelined: the next batch is reserved while the previous batch's orders are
        still on their way to the venue (at most ``max_in_flight`` at once), because waiting
        for every ACK before the next reservation would serialize the account on the slowest
        answer of each batch.
        """
        try:
            async with asyncio.TaskGroup() as sends:
                while True:
                    first = await self._intents.get()
                    batch = [first]
                    while len(batch) < self.config.max_batch and not self._intents.empty():
                        batch.append(self._intents.get_nowait())
                    try:
                        await self._admit(batch, sends)
                    except LeaseLost as exc:
                        self.stopped_reason = f"lease lost: {exc}"
                        log.error(
                            "execution stopped: this engine no longer holds the account lease",
                            account=self.config.account,
                            error=str(exc),
                        )
                        return
                    finally:
                        for _ in batch:
                            self._intents.task_done()
        except BaseExceptionGroup as group:
            _reraise_crash(group)
            raise

    async def run_resolver(self) -> None:
        """Look up unresolved orders every ``resolve_interval_s`` or when woken."""
        while True:
            await wait_event(self._resolve_wakeup, self.config.resolve_interval_s)
            self._resolve_wakeup.clear()
            try:
                await self.resolve_unresolved()
                await self.settle_owed_fills()
            except (DatabaseUnavailable, VenueError) as exc:
                log.warning("resolution pass failed; will retry", error=str(exc))
            except Exception:
                log.exception("resolution pass failed unexpectedly; will retry")

    # -- the protocol --------------------------------------------------------------------------

    async def process(self, intents: Sequence[Intent]) -> None:
        """One batch, start to finish: returns when every order in it has its answer."""
        try:
            async with asyncio.TaskGroup() as sends:
                await self._admit(intents, sends)
        except BaseExceptionGroup as group:
            _reraise_crash(group)
            raise

    async def _admit(self, intents: Sequence[Intent], sends: asyncio.TaskGroup) -> None:
        """Steps 2-3 for a batch (one reserve transaction); sends go to ``sends``."""
        await self.gate.prepare()
        now = self.clock()
        reservations: list[Reservation] = []
        for intent in intents:
            self.symbols.add(intent.symbol)
            if isinstance(intent, Hold):
                await self.ledger.decisions.record(
                    self._decision(intent, now, (), DecisionOutcome.HOLD)
                )
            elif isinstance(intent, Cancel):
                await self._cancel(intent, now)
            else:
                rules = await self.rules_for(intent.symbol)
                reservation = self._reserve_or_deny(intent, now, rules)
                if reservation is not None:
                    reservations.append(reservation)
        denials, self._denials = self._denials, []
        for denial in denials:
            await self.ledger.decisions.record(denial)
        if not reservations:
            return
        try:
            results = await self.ledger.orders.reserve(
                reservations, holder=self.lease.holder, epoch=self.lease.epoch
            )
        finally:
            self.gate.reserved()
        self.crash.hit(CrashPoint.AFTER_RESERVE)
        for result in results:
            if result.status is ReserveStatus.RESERVED and result.order is not None:
                self._spawn(sends, self._send(result.order))
            elif result.status is ReserveStatus.EXISTING and result.order is not None:
                # Already reserved by an earlier run: continue from the stored state, which for
                # an unresolved order means a lookup, never a blind resend.
                if result.order.state in UNRESOLVED:
                    self._spawn(sends, self._resolve_one(result.order))
            elif result.status is ReserveStatus.BLOCKED:
                log.info(
                    "order blocked by control",
                    client_order_id=result.client_order_id,
                    blocked_by=list(result.blocked_by),
                )

    def _spawn(self, group: asyncio.TaskGroup, work: Coroutine[Any, Any, None]) -> None:
        self._outstanding += 1

        async def tracked() -> None:
            try:
                async with self._send_slots:
                    await work
            except Exception:
                # A failed lookup or write must not take the account's execution down with it:
                # the order stays unresolved in the ledger and the resolver looks it up again.
                log.exception("order work failed; it will be looked up again")
                self._resolve_wakeup.set()
            finally:
                self._outstanding -= 1
                if self._outstanding == 0:
                    async with self._idle:
                        self._idle.notify_all()

        group.create_task(tracked())

    async def rules_for(self, symbol: Symbol) -> InstrumentRules | None:
        """The venue's trading rules for ``symbol``, fetched once; ``None`` while unavailable."""
        rules = self._rules.get(symbol)
        if rules is None:
            try:
                rules = await self.venue.instrument_rules(symbol)
            except VenueError as exc:
                log.warning("instrument rules unavailable", symbol=symbol, error=str(exc))
                return None
            # The ledger needs each symbol's assets (balance reconciliation, base-asset fees in
            # positions). A failed write is retried at the next fetch, not fatal to trading.
            try:
                await self.ledger.balances.upsert_instrument(rules)
            except DatabaseUnavailable as exc:
                log.warning("could not record instrument rules", symbol=symbol, error=str(exc))
                return rules
            self._rules[symbol] = rules
        return rules

    def _reserve_or_deny(
        self, intent: OrderIntent, now: datetime, rules: InstrumentRules | None
    ) -> Reservation | None:
        assessment = self.gate.assess(intent, now)
        verdicts = list(assessment.verdicts)
        quantity, price = assessment.quantity, intent.limit_price
        if assessment.approved:
            filters = _venue_filters(rules, intent, quantity)
            verdicts.append(filters)
            if filters.result is VerdictResult.REJECT:
                assessment = dataclasses.replace(assessment, approved=False)
            elif rules is not None:
                # Round to the venue's grid: the quantity down (never more than decided), the
                # price to the passive side (a buy never pays more than its limit).
                quantity = rules.round_quantity(quantity)
                if price is not None:
                    price = rules.round_price(price, intent.side)
        if not assessment.approved:
            self._denials.append(self._decision(intent, now, verdicts, DecisionOutcome.DENIED))
            log.info(
                "intent denied by risk",
                strategy=intent.strategy_id,
                symbol=intent.symbol,
                reason="; ".join(
                    f"{v.check}: {v.message or v.observed}"
                    for v in verdicts
                    if v.result is VerdictResult.REJECT
                ),
            )
            return None
        decision = self._decision(intent, now, verdicts, DecisionOutcome.RESERVED)
        return Reservation(
            decision=decision,
            client_order_id=client_order_id(self.config.order_id_prefix, intent.key),
            venue=self.venue.name,
            type=intent.order_type,
            time_in_force=intent.time_in_force,
            quantity=quantity,
            limit_price=price,
            expires_at=now + intent.ttl,
        )

    def _decision(
        self,
        intent: Intent,
        now: datetime,
        verdicts: Iterable[Verdict],
        outcome: DecisionOutcome,
    ) -> DecisionRecord:
        order = intent if isinstance(intent, Buy | Sell) else None
        return DecisionRecord(
            decision_id=decision_id(intent.key),
            strategy_id=intent.strategy_id,
            account=self.config.account,
            symbol=intent.symbol,
            intent=intent_kind(intent),
            side=order.side if order else None,
            quantity=order.quantity if order else None,
            limit_price=order.limit_price if order else None,
            reason=intent.reason,
            md_ts=intent.md_ts,
            decided_at=now,
            interval_key=intent.key.interval_key,
            sequence=intent.key.sequence,
            verdicts=tuple(verdicts),
            outcome=outcome,
        )

    async def _send(self, order: Order) -> None:
        """Steps 4-5 for one reserved order. Only ``BaseException`` (a simulated crash) escapes."""
        coid = order.client_order_id
        self._in_flight.add(coid)
        try:
            now = self.clock()
            final = self.gate.recheck(order, now)
            if not final.approved:
                # Nothing was sent for this id in this attempt. A fresh reservation was never on
                # the wire, so it can expire at once; a resubmission only reaches here after a
                # lookup found nothing past the consistency window.
                await self.ledger.orders.expire(
                    coid, f"final gate before submit: {_summary(final)}"
                )
                return
            request = OrderRequest(
                client_order_id=coid,
                symbol=order.symbol,
                side=order.side,
                type=order.type,
                quantity=order.requested_qty,
                limit_price=order.limit_price,
                time_in_force=order.time_in_force,
            )
            submitted_at = self.clock()
            try:
                report = await self.venue.submit(request)
            except Definitive as exc:
                await self.ledger.orders.mark_rejected(
                    coid, _error_text(exc), submitted_at=submitted_at
                )
                return
            except AuthFailed as exc:
                await self.ledger.orders.mark_rejected(
                    coid, _error_text(exc), submitted_at=submitted_at
                )
                await self._halt_for_auth(exc)
                return
            except (Ambiguous, RateLimited) as exc:
                # Maybe placed (or, for 429, refused but we take no chances): look it up later.
                await self.ledger.orders.mark_unknown(
                    coid, _error_text(exc), submitted_at=submitted_at
                )
                self._resolve_wakeup.set()
                return
            except Exception as exc:
                log.exception("unexpected error submitting; treating as ambiguous", coid=coid)
                await self.ledger.orders.mark_unknown(
                    coid, f"unexpected: {type(exc).__name__}: {exc}", submitted_at=submitted_at
                )
                self._resolve_wakeup.set()
                return
            self.gate.on_submitted(order, submitted_at)
            self.crash.hit(CrashPoint.AFTER_SUBMIT_BEFORE_ACK)
            acked = await self.ledger.orders.record_ack(coid, report, submitted_at=submitted_at)
            self.committed.remember(acked, report.fills)
            if report.fills:
                self.on_fills(report.fills)
        except (DatabaseUnavailable, LeaseLost) as exc:
            # The venue may hold the order; the ledger says PENDING_SUBMIT/UNKNOWN, which the
            # resolver (or the next start) settles by lookup.
            log.error(
                "ledger write failed while sending; order left for resolution",
                coid=coid,
                error=str(exc),
            )
        except Exception:
            log.exception("unexpected error in send path; order left for resolution", coid=coid)
        finally:
            self._in_flight.discard(coid)

    async def _halt_for_auth(self, exc: AuthFailed) -> None:
        reason = (
            f"venue refused our credentials ({_error_text(exc)}); "
            "fix the API key, then `tradectl unhalt`"
        )
        await self.ledger.controls.set(
            ControlScope.ACCOUNT,
            self.config.account,
            ControlKind.HALT,
            reason=reason,
            set_by="engine",
        )
        await self.ledger.incidents.open(
            kind="auth_failed",
            scope=f"account:{self.config.account}",
            severity="critical",
            message=f"trading halted for account {self.config.account}: {reason}",
            details={"code": exc.code, "http_status": exc.http_status},
            dedupe_key=f"auth_failed:{self.config.account}",
        )

    # -- cancels -------------------------------------------------------------------------------

    async def _cancel(self, intent: Cancel, now: datetime) -> None:
        order = await self.ledger.orders.get(intent.client_order_id)
        if order is None or order.state.is_terminal:
            outcome = DecisionOutcome.DENIED
            verdict = Verdict(
                check="cancel_target",
                result=VerdictResult.REJECT,
                limit="a non-terminal order",
                observed="unknown order" if order is None else order.state.value,
            )
            await self.ledger.decisions.record(self._decision(intent, now, (verdict,), outcome))
            return
        await self.ledger.decisions.record(
            self._decision(intent, now, (), DecisionOutcome.RESERVED)
        )
        await self.cancel_order(order, cause=f"cancel intent: {intent.reason}")

    async def cancel_order(self, order: Order, *, cause: str) -> None:
        """Request a cancel. Halts do not stop cancels: they only make exposure smaller."""
        if order.state is not OrderState.PENDING_CANCEL:
            try:
                order = await self.ledger.orders.request_cancel(order.client_order_id, cause)
            except StateConflict:
                # A stream report moved it on since it was read (typically: it filled). Act on
                # the current state: a terminal order has nothing left to cancel.
                current = await self.ledger.orders.get(order.client_order_id)
                if current is not None and not current.state.is_terminal:
                    await self.cancel_order(current, cause=cause)
                return
        try:
            report = await self.venue.cancel(order.symbol, order.client_order_id)
        except (NotFound, Definitive):
            # Already gone (filled, canceled, never placed): the lookup tells which.
            await self._resolve_one(order)
            return
        except VenueError as exc:
            log.warning(
                "cancel outcome unknown; will look up", coid=order.client_order_id, error=str(exc)
            )
            self._resolve_wakeup.set()
            return
        self.crash.hit(CrashPoint.AFTER_CANCEL_BEFORE_ACK)
        updated = await self.ledger.orders.apply_report(report, cause="cancel acknowledged")
        await self.fetch_missing_fills(report, updated)

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
            log.info("could not fetch an order's fills yet", coid=coid, error=str(exc))
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
                    "the venue's trade history, then `tradectl reconcile`"
                ),
                details={"client_order_id": coid, "venue_filled": str(owed.venue_filled)},
                dedupe_key=f"fills_missing:{coid}",
            )

    async def cancel_all(
        self, *, cause: str, strategy_id: str | None = None, symbol: str | None = None
    ) -> int:
        """Cancel every working order (optionally of one strategy or symbol). Orders still
        ``PENDING_SUBMIT`` are left to the resolver: a cancel cannot name what the venue may
        not have yet, and the lookup settles them."""
        orders = [
            o
            for o in await self.ledger.orders.non_terminal()
            if o.state is not OrderState.PENDING_SUBMIT
            and (strategy_id is None or o.strategy_id == strategy_id)
            and (symbol is None or o.symbol == symbol)
        ]
        for order in orders:
            await self.cancel_order(order, cause=cause)
        return len(orders)

    # -- resolution ----------------------------------------------------------------------------

    async def resolve_unresolved(self) -> int:
        """Look up every unresolved order not in flight here. Returns how many were looked at."""
        orders = [
            o
            for o in await self.ledger.orders.non_terminal()
            if o.state in UNRESOLVED and o.client_order_id not in self._in_flight
        ]
        for order in orders:
            await self._resolve_one(order)
        return len(orders)

    async def resolve_order(self, order: Order) -> None:
        """Look one order up on the venue and apply what it says (the reconciler's repair of
        an acknowledged order whose closing report was lost)."""
        await self._resolve_one(order)

    async def _resolve_one(self, order: Order) -> None:
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
                log.warning("venue does not know an acknowledged order", coid=coid)
            return None
        except VenueError as exc:
            log.info("lookup failed; will retry", coid=coid, error=str(exc))
            return None
        updated = await self.ledger.orders.apply_report(report, cause="lookup")
        if updated is None:
            return None
        self.committed.remember(updated, report.fills)
        if report.filled_quantity > updated.filled_qty:
            # The venue reports more filled than we hold fills for: fetch them by trade id.
            await self.sync_fills([order.symbol])
        return updated

    async def _not_found(self, order: Order) -> None:
        now = self.clock()
        since = order.submitted_at or order.created_at
        if now - since < self.config.consistency_window:
            return  # it may still appear: look again later
        coid = order.client_order_id
        if order.state is OrderState.PENDING_CANCEL:
            await self.ledger.orders.expire(coid, "venue never had the order; cancel requested")
            return
        if now >= order.expires_at:
            await self.ledger.orders.expire(
                coid,
                f"not on the venue after the {self.config.consistency_window.total_seconds():g}s"
                f" consistency window and the intent expired at {order.expires_at.isoformat()};"
                " not resent",
            )
            return
        if order.state is OrderState.UNKNOWN:
            order = await self.ledger.orders.transition(
                coid,
                OrderState.PENDING_SUBMIT,
                cause="resubmit: not found after consistency window",
            )
        log.info("resubmitting with the same client order id", coid=coid)
        await self._send(order)

    # -- fills ---------------------------------------------------------------------------------

    async def sync_fills(self, symbols: Iterable[Symbol] | None = None) -> int:
        """Fetch fills newer than the newest the ledger holds, per symbol. Returns rows added."""
        last = await self.ledger.fills.last_trade_ids()
        wanted = set(symbols) if symbols is not None else self.symbols | set(last)
        if symbols is None:
            wanted |= {o.symbol for o in await self.ledger.orders.non_terminal()}
        added = 0
        for symbol in sorted(wanted):
            after = last.get(symbol)
            while True:
                try:
                    trades = await self.venue.trades_since(symbol, after, limit=500)
                except VenueError as exc:
                    log.warning("could not fetch fills; will retry", symbol=symbol, error=str(exc))
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


class FillPath:
    """Applies the user stream: fills, order reports and balances, each idempotently."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        execution: Execution,
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        self.ledger = ledger
        self.execution = execution
        self.crash = execution.crash
        self.on_reconnect = on_reconnect
        #: the newest balance per asset the stream reported
        self.balances: dict[Asset, BalanceReport] = {}

    async def run(self) -> None:
        async for event in self.execution.venue.user_stream():
            try:
                await self.apply(event)
            except DatabaseUnavailable as exc:
                # Nothing is lost: the venue keeps the fill and the next reconcile fetches it.
                log.error("could not record a venue event; it will be re-fetched", error=str(exc))
                if self.on_reconnect is not None:
                    self.on_reconnect()
            except Exception:
                # One event the ledger refuses (a report it cannot place, say) must not stop
                # every later fill from being recorded: log it whole, reconcile from the venue.
                log.exception("could not apply a venue event; reconciling", venue_event=repr(event))
                if self.on_reconnect is not None:
                    self.on_reconnect()

    async def apply(self, event: UserEvent) -> None:
        committed = self.execution.committed
        if isinstance(event, FillReport):
            if committed.has_fill(event):
                return  # this process already committed it (e.g. with the ACK)
            self.crash.hit(CrashPoint.AFTER_FILL_BEFORE_COMMIT)
            inserted = await self.ledger.fills.append([event])
            committed.remember_fills(inserted)
            self.execution.on_fills(inserted)
        elif isinstance(event, OrderReport):
            if committed.adds_nothing(event):
                return
            if event.fills:
                self.crash.hit(CrashPoint.AFTER_FILL_BEFORE_COMMIT)
            order = await self.ledger.orders.apply_report(event, cause="stream")
            if order is not None:
                committed.remember(order, event.fills)
            self.execution.on_fills(event.fills)
            await self.execution.fetch_missing_fills(event, order)
        elif isinstance(event, BalanceReport):
            # Venues push a balance update with every fill; writing each would double the
            # ledger's work per order. Keep the newest per asset; the reconciler records
            # snapshots (and a restart re-reads them from the venue anyway).
            self.balances[event.asset] = event
        elif isinstance(event, StreamReconnected):
            log.info("user stream reconnected; reconciling", reason=event.reason)
            if self.on_reconnect is not None:
                self.on_reconnect()


_OWED_ATTEMPTS = 30
_OWED_LOOKBACK = timedelta(days=2)


@dataclass(slots=True)
class _Owed:
    order: Order
    venue_filled: Decimal
    attempts: int = 0


class CommittedFacts:
    """What this process has itself committed to the ledger, recently (bounded).

    Venues repeat themselves: a fill comes with the ACK, again on the user stream, and again
    from the trades query. Skipping a stream event is safe only when the ledger already holds
    everything it says, which this process knows for the orders and fills it wrote itself.
    Anything not remembered (older, or written by another process) goes to the ledger, whose
    writes are idempotent anyway.
    """

    def __init__(self, capacity: int = 20_000) -> None:
        self.capacity = capacity
        self._orders: OrderedDict[ClientOrderId, Order] = OrderedDict()
        self._fills: OrderedDict[tuple[str, str, str], None] = OrderedDict()

    def remember(self, order: Order, fills: Iterable[FillReport] = ()) -> None:
        self._orders[order.client_order_id] = order
        self._orders.move_to_end(order.client_order_id)
        while len(self._orders) > self.capacity:
            self._orders.popitem(last=False)
        self.remember_fills(fills)

    def remember_fills(self, fills: Iterable[FillReport]) -> None:
        for fill in fills:
            self._fills[(fill.venue, fill.symbol, fill.trade_id)] = None
        while len(self._fills) > self.capacity:
            self._fills.popitem(last=False)

    def has_fill(self, fill: FillReport) -> bool:
        return (fill.venue, fill.symbol, fill.trade_id) in self._fills

    def adds_nothing(self, report: OrderReport) -> bool:
        order = self._orders.get(report.client_order_id)
        if order is None or order.venue_order_id is None:
            return False
        if not all(self.has_fill(f) for f in report.fills):
            return False
        implied = target_state(
            order.state, report.status, report.filled_quantity, order.requested_qty
        )
        return implied is order.state and report.filled_quantity <= order.filled_qty


def _venue_filters(rules: InstrumentRules | None, intent: OrderIntent, qty: Decimal) -> Verdict:
    """The venue's own filters (step, tick, minimum notional) as a verdict, after rounding."""
    if rules is None:
        return Verdict(
            check="venue_filters",
            result=VerdictResult.REJECT,
            limit="instrument rules known",
            observed="unavailable",
            message="the venue's trading rules could not be fetched; not trading blind",
        )
    rounded = rules.round_quantity(qty)
    price = (
        None if intent.limit_price is None else rules.round_price(intent.limit_price, intent.side)
    )
    problems = rules.violations(rounded, price)
    limit = (
        f"step {rules.step_size}, tick {rules.tick_size}, min qty {rules.min_qty}, "
        f"min notional {rules.min_notional}"
    )
    observed = f"qty {rounded}" + (f" @ {price}" if price is not None else "")
    if problems:
        return Verdict(
            check="venue_filters",
            result=VerdictResult.REJECT,
            limit=limit,
            observed=observed,
            message="; ".join(problems),
        )
    return Verdict(check="venue_filters", result=VerdictResult.PASS, limit=limit, observed=observed)


def _reraise_crash(group: BaseExceptionGroup[BaseException]) -> None:
    # _send and _resolve_one handle every Exception; only a simulated crash (a process death)
    # gets here, and it must look like one to the caller.
    crash = group.subgroup(SimulatedCrash)
    if crash is not None:
        raise crash.exceptions[0] from None


def _summary(assessment: RiskAssessment) -> str:
    failed = assessment.rejections
    return "; ".join(f"{v.check}: {v.message or v.observed}" for v in failed) or "approved"


def _error_text(exc: VenueError) -> str:
    code = f" (code {exc.code})" if exc.code is not None else ""
    return f"{type(exc).__name__}: {exc}{code}"
