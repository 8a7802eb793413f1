"""The execution coroutine: intents in, each decision an exchange order at most once.

This is ARCHITECTURE.md's durable protocol, one phase per foreign call:

1. decide (the strategy) → 2. risk verdicts (pure) → 3. RESERVE transaction (fence, controls,
decision, order ``PENDING_SUBMIT``, first event) → 4. final gate in memory → 5. submit with the
reserved client order id, classified as accepted (ACK transaction) / refused (``REJECTED``) /
ambiguous (``UNKNOWN``) → 6. resolution of ``PENDING_SUBMIT`` / ``UNKNOWN`` orders, always by a
lookup before any resubmission (:mod:`engine.execution.recovery`) → 7. fills appended
idempotently by trade id.

Fills and order reports from the user stream are applied by
:class:`~engine.execution.fill_path.FillPath` in their own task, so execution work never waits
behind intents or market data.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
from collections.abc import Callable, Coroutine, Iterable, Sequence
from datetime import datetime
from typing import Any

import structlog

from engine.crashpoints import NO_CRASH, CrashPoint, CrashPoints, SimulatedCrash
from engine.domain.holds import HoldRuns, HoldStep, RepeatCount
from engine.domain.ids import client_order_id, decision_id
from engine.domain.intents import Buy, Cancel, Hold, Intent, OrderIntent, Sell, intent_kind
from engine.domain.risk import Verdict
from engine.domain.types import (
    UNRESOLVED,
    ClientOrderId,
    DecisionOutcome,
    Symbol,
    VerdictResult,
    utc_now,
)
from engine.exceptions import (
    DatabaseUnavailable,
    LeaseLost,
    VenueError,
)
from engine.execution.cancels import Cancels
from engine.execution.config import ExecutionConfig
from engine.execution.fill_path import CommittedFacts
from engine.execution.order_log import order_context
from engine.execution.protocols import Lease, RiskGate
from engine.execution.sending import Sending
from engine.execution.venue_filters import venue_filters
from engine.ledger.ledger import Ledger
from engine.ledger.records import DecisionRecord, Reservation, ReserveStatus
from engine.metrics import ExecutionMetrics, error
from engine.outage import AlwaysAvailable, LedgerState, ThrottledLog
from engine.tasks import wait_event
from engine.venues.base import FillReport, InstrumentRules, Venue

log = structlog.get_logger("tradectl.execution")


class Execution(Sending, Cancels):
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
        ledger_state: LedgerState | None = None,
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
        self._rules: dict[Symbol, InstrumentRules] = {}
        self.metrics = ExecutionMetrics(config.account, self._rules)
        self.on_fills = self.metrics.counting_fills(on_fills or (lambda fills: None))
        #: while the ledger is away (engine.outage) intents are dropped and the resolver waits
        self.ledger_state: LedgerState = ledger_state or AlwaysAvailable()
        self._throttled = ThrottledLog(log)
        self.dropped = 0
        self._intents: asyncio.Queue[Intent] = asyncio.Queue()
        self._denials: list[DecisionRecord] = []
        #: the open hold runs of each (strategy, symbol): identical holds are counted, not rows
        self.holds = HoldRuns()
        self._owed = {}
        self.committed = CommittedFacts(config.account)
        self._outstanding = 0
        self._idle = asyncio.Condition()
        self._send_slots = asyncio.Semaphore(config.max_in_flight)
        # Orders this process is sending right now: the resolver must not look them up and
        # resubmit while the first request may still be on its way.
        self._in_flight: set[ClientOrderId] = set()
        self._look_again_at: dict[ClientOrderId, datetime] = {}
        self._init_sending()
        self._resolve_wakeup = asyncio.Event()
        self.symbols: set[Symbol] = set()
        self.stopped_reason: str | None = None
        #: the key an auth failure names; the resolver's pause while the reads circuit is open
        self.credential = "the venue API key"
        self.resolve_backoff: Callable[[], float] = lambda: 0.0

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
                        if self.ledger_state.available:
                            await self._admit(batch, sends)
                        else:
                            self._drop(batch)
                    except DatabaseUnavailable as exc:
                        # The reserve transaction (or a read before it) failed: nothing of
                        # this batch was reserved, so nothing of it may be sent (a statement
                        # the client gave up on is cancelled by the server first: ledger/
                        # connections.py; an order whose commit answer was lost is found by
                        # the post-outage reconcile, as after a crash).
                        self.ledger_state.unavailable(exc, where="execution")
                        self._drop(batch)
                    except LeaseLost as exc:
                        self.stopped_reason = f"lease lost: {exc}"
                        error(self.config.account, "execution")
                        log.error(
                            "execution.stopped_lease_lost",
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

    def _drop(self, batch: Sequence[Intent]) -> None:
        """Never reserved, so never sent; not kept (their data ages): strategies decide again
        once the post-outage reconcile has run."""
        self.dropped += len(batch)
        self.metrics.dropped((i.strategy_id for i in batch), "ledger_unavailable")
        self._throttled.warning(
            "dropped",
            "intents.dropped_ledger_unavailable",
            dropped_total=self.dropped,
        )

    async def run_resolver(self) -> None:
        """Look up unresolved orders every ``resolve_interval_s`` or when woken."""
        while True:
            await wait_event(self._resolve_wakeup, self.config.resolve_interval_s)
            self._resolve_wakeup.clear()
            if not self.ledger_state.available:
                continue  # the post-outage reconcile resolves them (engine.outage)
            if (backoff := self.resolve_backoff()) > 0:
                await asyncio.sleep(backoff)  # the reads circuit is open: look up less often
            try:
                await self.resolve_unresolved()
                await self.settle_owed_fills()
            except DatabaseUnavailable as exc:
                self.ledger_state.unavailable(exc, where="resolver")
            except VenueError as exc:
                log.warning("resolver.pass_failed", error=str(exc))
            except Exception:
                error(self.config.account, "resolver")
                log.exception("resolver.pass_failed")

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
        holds: list[DecisionRecord] = []
        counts: list[RepeatCount] = []
        for intent in intents:
            self.symbols.add(intent.symbol)
            if isinstance(intent, Hold):
                self._hold(intent, now, holds, counts)
            elif isinstance(intent, Cancel):
                await self._cancel(intent, now)
            else:
                rules = await self.rules_for(intent.symbol)
                reservation = self._reserve_or_deny(intent, now, rules)
                if reservation is not None:
                    reservations.append(reservation)
        denials, self._denials = self._denials, []
        # The batch's holds and denials in one statement, then the hold counts (which may
        # name a hold row of this batch): not a write per decision.
        if holds or denials:
            await self.ledger.decisions.record_many([*holds, *denials])
        for denial in denials:
            self.metrics.decided(denial)
        if counts:
            await self.ledger.decisions.count_repeats(counts)
        if not reservations:
            return
        try:
            results = await self.ledger.orders.reserve(
                reservations, holder=self.lease.holder, epoch=self.lease.epoch
            )
        finally:
            self.gate.reserved()
        self.metrics.reserved(reservations, results)
        self.crash.hit(CrashPoint.AFTER_RESERVE)
        for result in results:
            if result.status is ReserveStatus.RESERVED and result.order is not None:
                order = result.order
                # the send task runs with the order's ids bound, as does this line
                context = order_context(order)
                context.run(
                    log.debug,
                    "order.reserved",
                    symbol=order.symbol,
                    side=order.side.value,
                    qty=order.requested_qty,
                    limit_price=order.limit_price,
                )
                self._spawn(sends, self._send(order), context)
            elif result.status is ReserveStatus.EXISTING and result.order is not None:
                # Already reserved by an earlier run: continue from the stored state, which for
                # an unresolved order means a lookup, never a blind resend.
                if result.order.state in UNRESOLVED:
                    self._spawn(sends, self._resolve_one(result.order))
            elif result.status is ReserveStatus.BLOCKED:
                decision = next(
                    r.decision for r in reservations if r.client_order_id == result.client_order_id
                )
                log.info(
                    "order.blocked",
                    account=decision.account,
                    strategy=decision.strategy_id,
                    decision_id=decision.decision_id,
                    client_order_id=result.client_order_id,
                    blocked_by=list(result.blocked_by),
                )

    def _hold(
        self,
        intent: Hold,
        now: datetime,
        records: list[DecisionRecord],
        counts: list[RepeatCount],
    ) -> None:
        """A hold gets a row only when its reason changes to one without a row in the last
        hour; identical holds are counted on that row (engine.domain.holds). Both are written
        with the batch."""
        decision = self._decision(intent, now, (), DecisionOutcome.HOLD)
        self.metrics.decided(decision)
        step = self.holds.hold(
            intent.strategy_id, intent.symbol, intent.reason, decision.decision_id, now
        )
        counts.extend(step.counts)
        if step.record:
            records.append(decision)

    async def _write_repeats(self, step: HoldStep) -> None:
        if step.counts:
            await self.ledger.decisions.count_repeats(step.counts)

    async def flush_holds(self) -> None:
        """Write every hold count not written yet (at a stop)."""
        await self._write_repeats(HoldStep(record=False, counts=self.holds.flush(self.clock())))

    def _spawn(
        self,
        group: asyncio.TaskGroup,
        work: Coroutine[Any, Any, None],
        context: contextvars.Context | None = None,
    ) -> None:
        self._outstanding += 1

        async def tracked() -> None:
            try:
                async with self._send_slots:
                    await work
            except DatabaseUnavailable as exc:
                # Left unresolved in the ledger: the post-outage reconcile looks it up.
                self.ledger_state.unavailable(exc, where="order work")
            except Exception:
                # A failed lookup or write must not take the account's execution down with it:
                # the order stays unresolved in the ledger and the resolver looks it up again.
                error(self.config.account, "execution")
                log.exception("order.work_failed")
                self._resolve_wakeup.set()
            finally:
                self._outstanding -= 1
                if self._outstanding == 0:
                    async with self._idle:
                        self._idle.notify_all()

        group.create_task(tracked(), context=context)

    async def rules_for(self, symbol: Symbol) -> InstrumentRules | None:
        """The venue's trading rules for ``symbol``, fetched once; ``None`` while unavailable."""
        rules = self._rules.get(symbol)
        if rules is None:
            try:
                rules = await self.venue.instrument_rules(symbol)
            except VenueError as exc:
                log.warning("instrument.rules_unavailable", symbol=symbol, error=str(exc))
                return None
            # The ledger needs each symbol's assets (balance reconciliation, base-asset fees in
            # positions). A failed write is retried at the next fetch, not fatal to trading.
            try:
                await self.ledger.balances.upsert_instrument(rules)
            except DatabaseUnavailable as exc:
                log.warning("instrument.record_failed", symbol=symbol, error=str(exc))
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
            filters = venue_filters(rules, intent, quantity)
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
            denial = self._decision(intent, now, verdicts, DecisionOutcome.DENIED)
            self._denials.append(denial)
            log.info(
                "decision.denied",
                account=denial.account,
                strategy=denial.strategy_id,
                decision_id=denial.decision_id,
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
            decision_price=order.decision_price if order else None,
            strategy_version=intent.strategy_version,
            config_hash=intent.config_hash,
            stage=intent.stage,
            capital_fraction=intent.capital_fraction,
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
            denied = self._decision(intent, now, (verdict,), outcome)
            await self.ledger.decisions.record(denied)
            self.metrics.decided(denied)
            return
        decided = self._decision(intent, now, (), DecisionOutcome.RESERVED)
        await self.ledger.decisions.record(decided)
        self.metrics.decided(decided)
        await self.cancel_order(order, cause=f"cancel intent: {intent.reason}")


def _reraise_crash(group: BaseExceptionGroup[BaseException]) -> None:
    # _send and _resolve_one handle every Exception; only a simulated crash (a process death)
    # gets here, and it must look like one to the caller.
    crash = group.subgroup(SimulatedCrash)
    if crash is not None:
        raise crash.exceptions[0] from None
