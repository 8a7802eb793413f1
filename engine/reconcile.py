"""Reconciliation: at startup before any strategy trades, periodically, and after reconnects.

The one automatic repair is appending missing fills (unambiguous: the venue's trade ids). Every
other mismatch is reported, not guessed at: the affected scope is paused and an incident says
what to check and what to run. Incidents are deduplicated per mismatch, so a mismatch that
persists across cycles is one incident, not one per cycle.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import structlog

from engine.domain.ids import is_ours
from engine.domain.types import Asset, ControlKind, ControlScope, OrderState, StrategyId
from engine.exceptions import DatabaseUnavailable, ReadsBehind, VenueError
from engine.execution import Execution
from engine.ledger.ledger import Ledger
from engine.metrics import balance_differences, error, reconcile_pass
from engine.settlement import Settler
from engine.tasks import wait_event

log = structlog.get_logger("tradectl.reconcile")

_ACKNOWLEDGED = frozenset({OrderState.OPEN, OrderState.PARTIALLY_FILLED})


@dataclass(slots=True)
class ReconcileReport:
    orders_looked_up: int = 0
    fills_added: int = 0
    unknown_orders: list[str] = field(default_factory=list)
    incidents: list[int] = field(default_factory=list)
    #: whether venue balances were compared with the ledger (fills in flight skip the check)
    balances_checked: bool = False
    balances_note: str = ""
    #: per drifting asset: venue total, ledger expectation, difference, paused scope
    balance_drifts: list[dict[str, str]] = field(default_factory=list)
    #: assets whose drift an operator accepted (``accept_balances``): the new baseline
    balances_accepted: list[str] = field(default_factory=list)
    #: symbols with trades that tradectl did not place, reported in this pass
    external_trades: list[str] = field(default_factory=list)
    #: markets whose settlement this pass recorded
    settlements_recorded: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "orders_looked_up": self.orders_looked_up,
            "fills_added": self.fills_added,
            "unknown_orders": list(self.unknown_orders),
            "incidents": list(self.incidents),
            "balances_checked": self.balances_checked,
            "balances_note": self.balances_note,
            "balance_drifts": list(self.balance_drifts),
            "balances_accepted": list(self.balances_accepted),
            "external_trades": list(self.external_trades),
            "settlements_recorded": list(self.settlements_recorded),
        }


#: how far back the balance check fetches the venue's trades again: a fill reported late,
#: behind newer trades, is older than the newest trade id the ledger holds
FILL_LOOKBACK = timedelta(minutes=10)


#: looks at a suspected drift before strategies start (each after the settle window)
STARTUP_CONFIRMATIONS = 3
#: looks per pass when fills keep arriving during the check
COMPARE_ATTEMPTS = 5
MIN_RECHECK_S = 0.2
#: a periodic pass waits while less than this fraction of the venue's read budget is left:
#: orders, cancels, lookups and a taking-over engine's startup need it more, and a pass that
#: ran anyway would stall them all at the budget's edge until its window rolls over
MIN_READ_HEADROOM = 0.4


@dataclass(slots=True)
class _Suspect:
    """A drift seen but not yet confirmed: the difference, and since when it is unchanged."""

    difference: Decimal
    since: float
    #: reported (incident + pause); later passes that see the same difference report it again
    confirmed: bool = False


class Reconciler:
    def __init__(
        self,
        *,
        ledger: Ledger,
        execution: Execution,
        prefix: str,
        balance_tolerance: str,
        settle_s: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
        settler: Settler | None = None,
        read_headroom: Callable[[], float] = lambda: 1.0,
    ) -> None:
        self.ledger = ledger
        self._read_headroom = read_headroom
        #: a venue whose markets settle: its settlements are recorded before balances compare
        self.settler = settler
        self.execution = execution
        self.prefix = prefix
        #: a drift counts only once it has stayed the same this long: owed and reordered fills
        #: arrive within it, a deposit or a trade made outside tradectl does not go away
        self.settle_s = settle_s
        self._monotonic = monotonic
        self._suspects: dict[Asset, _Suspect] = {}
        #: fills up to this id were checked for trades made outside tradectl
        self._external_after: int | None = None
        try:
            self.tolerance = abs(Decimal(balance_tolerance))
        except InvalidOperation:
            raise ValueError(
                f"TRADECTL_BALANCE_TOLERANCE must be a decimal amount, got {balance_tolerance!r}"
            ) from None
        self._wake = asyncio.Event()
        #: passes asked for so far, and the newest request a completed pass began after: a
        #: pass that was already running when a request came proves nothing about it
        self.requested = 0
        self.completed_through = 0

    def request(self) -> int:
        """Ask for a pass soon (after a stream reconnect or a failed write); the ticket is
        covered once ``completed_through`` reaches it."""
        self.requested += 1
        self._wake.set()
        return self.requested

    async def run_periodic(self, interval_s: float) -> None:
        while True:
            await wait_event(self._wake, min(interval_s, self._until_confirmable()))
            self._wake.clear()
            if not self.execution.ledger_state.available:
                continue  # the pass that ends an outage is run by engine.outage
            asked = self.requested > self.completed_through
            if not asked and (headroom := self._read_headroom()) < MIN_READ_HEADROOM:
                reconcile_pass(self.ledger.account, "deferred")
                log.debug("reconcile.deferred", read_headroom=round(headroom, 3))
                continue
            try:
                await self.reconcile()
                reconcile_pass(self.ledger.account, "done")
            except DatabaseUnavailable as exc:
                self.execution.ledger_state.unavailable(exc, where="reconcile")
                reconcile_pass(self.ledger.account, "failed")
            except VenueError as exc:
                log.warning("reconcile.pass_failed", error=str(exc))
                reconcile_pass(self.ledger.account, "failed")
            except Exception:
                error(self.ledger.account, "reconcile")
                log.exception("reconcile.pass_failed")
                reconcile_pass(self.ledger.account, "failed")

    async def reconcile(
        self, *, startup: bool = False, accept_balances: bool = False
    ) -> ReconcileReport:
        """One pass. ``accept_balances`` (an operator's `tradectl reconcile --accept-balances`
        after checking) takes the venue's balances as the new baseline where they drifted and
        resolves those drift incidents; pauses stay until the operator resumes."""
        report = ReconcileReport()
        ticket = self.requested
        report.orders_looked_up = await self.execution.resolve_unresolved()
        report.fills_added = await self.execution.sync_fills()
        await self._venue_open_orders(report)
        await self._external_trades(report)
        if self.settler is not None:
            report.settlements_recorded = [str(s) for s in await self.settler.sync()]
        await self._balances(report, accept=accept_balances)
        if startup:
            # Strategies start after this pass: a suspected drift is confirmed or cleared
            # first, not left for the periodic pass to find while they trade.
            for _ in range(STARTUP_CONFIRMATIONS):
                if not self._unconfirmed():
                    break
                await asyncio.sleep(self._until_confirmable())
                # A market that settled while we waited moves its balances as a drift would:
                # record it first, as every periodic pass does (the lifecycle stream is not
                # read before startup ends).
                if self.settler is not None:
                    try:
                        settled = await self.settler.sync()
                    except VenueError as exc:
                        log.info("reconcile.settlements_skipped", reason=str(exc))
                        continue  # not known whether one is missing: confirm nothing now
                    report.settlements_recorded += [str(s) for s in settled]
                await self._balances(report, accept=False)
        if (
            report.fills_added
            or report.unknown_orders
            or report.balance_drifts
            or report.external_trades
        ):
            log.info(
                "reconcile.done",
                fills_added=report.fills_added,
                unknown_orders=report.unknown_orders,
                balance_drifts=[d["asset"] for d in report.balance_drifts],
                startup=startup,
            )
        self.completed_through = max(self.completed_through, ticket)
        return report

    # -- balances ------------------------------------------------------------------------------

    async def _balances(self, report: ReconcileReport, *, accept: bool) -> None:
        """Venue balances vs baseline + fills since (see ``balance_baselines`` in the schema).

        The comparison is made only against a ledger known to be complete up to the venue's
        snapshot: the venue's recent trades are fetched again after it is read (a fill whose
        report came late, behind newer ones, is found too); a failed fetch means "cannot
        compare now", never "nothing missing"; and when the fetch or the user stream added a
        fill meanwhile, the check waits for the next pass. A drift then only counts once it
        has stayed the same for ``settle_s`` (:meth:`_settled`). Totals (free + locked) are
        compared: resting orders only move value between the two.
        """
        for symbol in sorted(await self.ledger.balances.symbols_without_instrument()):
            await self.execution.rules_for(symbol)
        unknown = await self.ledger.balances.symbols_without_instrument()
        if unknown:
            report.balances_note = (
                f"not compared: no instrument rules for {sorted(unknown)} (their fills' assets "
                "are unknown)"
            )
            log.warning("reconcile.balances_skipped", reason=report.balances_note)
            return
        try:
            # A strategy trading every second moves the fill watermark during many checks:
            # look again at once rather than leave the balances unchecked until the next pass.
            for _ in range(COMPARE_ATTEMPTS):
                compared = await self._compare()
                if compared is not None:
                    break
        except VenueError as exc:
            report.balances_note = f"not compared: the venue's trades could not be fetched ({exc})"
            log.info("reconcile.balances_skipped", reason=report.balances_note)
            return
        if compared is None:
            report.balances_note = (
                "not compared: fills arrived or the venue's reads lagged during the check; "
                "next pass"
            )
            return
        drifts, totals, watermark, taken_at = compared
        report.balances_checked = True
        agreeing = {a: t for a, t in totals.items() if a not in drifts}
        if accept:
            self._suspects.clear()
        else:
            drifts = self._settled(drifts)
            if self._unconfirmed():
                report.balances_note = (
                    f"drift in {self._unconfirmed()} not confirmed yet: looking again within "
                    f"{self.settle_s:g}s"
                )
        for asset, (venue_total, expected) in sorted(drifts.items()):
            if accept:
                agreeing[asset] = venue_total
                report.balances_accepted.append(asset)
                await self.ledger.incidents.resolve_by_key(
                    self._drift_key(asset),
                    f"venue balance {venue_total} accepted as the new baseline "
                    f"(ledger expected {expected}) by an operator's reconcile",
                )
                continue
            await self._drift(report, asset, venue_total, expected)
        await self.ledger.balances.save_baselines(agreeing, fill_id=watermark, taken_at=taken_at)

    def _settled(
        self, drifts: dict[Asset, tuple[Decimal, Decimal]]
    ) -> dict[Asset, tuple[Decimal, Decimal]]:
        """The drifts that have kept the same difference for ``settle_s``; the others are
        remembered as suspects (a changed difference starts the wait again)."""
        now = self._monotonic()
        confirmed: dict[Asset, tuple[Decimal, Decimal]] = {}
        for asset in list(self._suspects):
            if asset not in drifts:
                del self._suspects[asset]  # a fill in flight arrived: it was never a drift
        for asset, (venue_total, expected) in drifts.items():
            difference = venue_total - expected
            suspect = self._suspects.get(asset)
            if suspect is None or suspect.difference != difference:
                self._suspects[asset] = _Suspect(difference=difference, since=now)
            elif suspect.confirmed or now - suspect.since >= self.settle_s:
                suspect.confirmed = True
                confirmed[asset] = (venue_total, expected)
        return confirmed

    def _unconfirmed(self) -> list[Asset]:
        return sorted(a for a, s in self._suspects.items() if not s.confirmed)

    def _until_confirmable(self) -> float:
        """Seconds until the oldest suspected drift can be confirmed (inf when none)."""
        waiting = [s.since for s in self._suspects.values() if not s.confirmed]
        if not waiting:
            return float("inf")
        oldest = min(waiting)
        # never a busy loop: a look that could not compare (fills arriving) is retried later
        return max(MIN_RECHECK_S, oldest + self.settle_s - self._monotonic())

    async def _compare(
        self,
    ) -> tuple[dict[Asset, tuple[Decimal, Decimal]], dict[Asset, Decimal], int, datetime] | None:
        """``(drifts, venue totals, fill watermark, baseline time)``, or ``None`` when fills or
        settlements were recorded meanwhile, or the venue's reads do not cover its balances
        yet (:class:`ReadsBehind`).

        Raises the venue's error when its trades could not be fetched.
        """
        # A baseline contains the settlements recorded before the venue's balances were read:
        # those committed before this watermark read (stamped earlier than taken_at); one
        # committed later voids this comparison (checked below).
        settled = await self.ledger.settlements.watermark()
        taken_at = self.execution.clock()
        before = await self.ledger.balances.fill_watermark()
        try:
            venue_balances = await self.execution.venue.balances()
        except ReadsBehind as exc:
            # A snapshot the venue's fills listing does not cover yet would take a fill it
            # holds into the baseline, and count it again when the fill lands.
            log.info("reconcile.reads_behind", reason=str(exc))
            return None
        await self.ledger.balances.record(venue_balances)
        await self.execution.sync_fills(since=self.execution.clock() - FILL_LOOKBACK, strict=True)
        watermark = await self.ledger.balances.fill_watermark()
        if watermark != before:
            return None
        totals: dict[Asset, Decimal] = {b.asset: b.total for b in venue_balances}
        # An asset the venue omits (Binance lists only non-zero balances) holds zero.
        for base, quote in (await self.ledger.balances.instruments()).values():
            totals.setdefault(base, Decimal(0))
            totals.setdefault(quote, Decimal(0))
        expected = await self.ledger.balances.expected(
            upto_fill_id=watermark, upto_settlement_id=settled
        )
        if await self.ledger.settlements.watermark() != settled:
            return None
        for asset in expected:
            totals.setdefault(asset, Decimal(0))
        drifts = {
            asset: (totals[asset], want)
            for asset, want in expected.items()
            if abs(totals[asset] - want) > self.tolerance
        }
        balance_differences(self.ledger.account, {a: w - totals[a] for a, w in expected.items()})
        return drifts, totals, watermark, taken_at

    def _drift_key(self, asset: str) -> str:
        return f"balance_drift:{self.ledger.account}:{self.ledger.venue}:{asset}"

    async def _drift(
        self, report: ReconcileReport, asset: Asset, venue_total: Decimal, expected: Decimal
    ) -> None:
        """Pause whoever trades the asset (the account when nobody has yet) and open one
        incident per drifting asset."""
        diff = venue_total - expected
        what = (
            f"venue balance {asset} differs from ledger by {diff:f} "
            f"(venue {venue_total:f}, ledger expects {expected:f})"
        )
        paused, resume, scope, strategies = await self._pause_traders_of(asset, what)
        incident = await self.ledger.incidents.open(
            kind="balance_drift",
            scope=scope,
            severity="error",
            message=(
                f"{paused} paused: {what}. Check deposits, withdrawals and trades made outside "
                "tradectl; then run `tradectl reconcile --accept-balances --reason '…'` to take "
                f"the venue's balance as the truth, and {resume}"
            ),
            details={
                "asset": asset,
                "venue_total": str(venue_total),
                "ledger_expected": str(expected),
                "difference": str(diff),
                "tolerance": str(self.tolerance),
                "paused": strategies or [self.ledger.account],
            },
            dedupe_key=self._drift_key(asset),
        )
        report.incidents.append(incident.id)
        report.balance_drifts.append(
            {
                "asset": asset,
                "venue_total": str(venue_total),
                "ledger_expected": str(expected),
                "difference": str(diff),
                "paused": scope,
                "incident": str(incident.id),
            }
        )
        error(self.ledger.account, "reconcile")
        log.error(
            "reconcile.balance_drift",
            paused=paused,
            what=what,
            incident=incident.id,
            action="check, then `tradectl reconcile --accept-balances`",
        )

    async def _pause_traders_of(
        self, asset: Asset, reason: str
    ) -> tuple[str, str, str, list[StrategyId]]:
        """Pause whoever trades ``asset`` (the account when nobody has yet): ``(what was
        paused, how to resume, incident scope, strategies)``."""
        strategies = await self.ledger.balances.strategies_trading(asset)
        if strategies:
            for strategy in strategies:
                await self.ledger.controls.set(
                    ControlScope.STRATEGY, strategy, ControlKind.PAUSE, reason=reason,
                    set_by="reconciler",
                )  # fmt: skip
            return (
                ", ".join(f"strategy {s}" for s in strategies),
                "; ".join(f"`tradectl resume --strategy {s} --reason '…'`" for s in strategies),
                "strategy:" + ",".join(strategies),
                strategies,
            )
        await self.ledger.controls.set(
            ControlScope.ACCOUNT, self.ledger.account, ControlKind.PAUSE, reason=reason,
            set_by="reconciler",
        )  # fmt: skip
        account = self.ledger.account
        return f"account {account}", "`tradectl resume --reason '…'`", f"account:{account}", []

    async def _external_trades(self, report: ReconcileReport) -> None:
        """Fills no order of ours placed (a trade made by hand on the venue, another program on
        this account) are recorded like every fill, so balances agree; but the holdings moved
        outside tradectl, and that needs a human: pause whoever trades the asset, say so once."""
        if self._external_after is None:
            self._external_after = await self.ledger.incidents.external_trades_reported()
        instruments = await self.ledger.balances.instruments()
        for group in await self.ledger.fills.external(after=self._external_after):
            base = instruments.get(group.symbol, (Asset(group.symbol), Asset(group.symbol)))[0]
            what = (
                f"{group.trades} trade(s) on {group.symbol} that tradectl did not place "
                f"(net {group.net_qty:+f} {base}; trade ids {', '.join(group.trade_ids)})"
            )
            paused, resume, scope, strategies = await self._pause_traders_of(base, what)
            incident = await self.ledger.incidents.open(
                kind="external_trade",
                scope=scope,
                severity="error",
                message=(
                    f"{paused} paused: {what}. Check the venue's trade history (a manual trade, "
                    "another program on this account?); the fills are recorded and positions "
                    f"include them. Then {resume} and resolve this incident"
                ),
                details={
                    "symbol": group.symbol,
                    "trades": group.trades,
                    "net_qty": str(group.net_qty),
                    "trade_ids": list(group.trade_ids),
                    "last_fill_id": group.last_fill_id,
                    "paused": strategies or [self.ledger.account],
                },
                dedupe_key=f"external_trade:{group.symbol}:{group.last_fill_id}",
            )
            report.incidents.append(incident.id)
            report.external_trades.append(group.symbol)
            error(self.ledger.account, "reconcile")
            log.error("reconcile.external_trade", paused=paused, what=what, incident=incident.id)
            self._external_after = max(self._external_after, group.last_fill_id)

    async def _venue_open_orders(self, report: ReconcileReport) -> None:
        venue_open = await self.execution.venue.open_orders()
        await self._closed_on_the_venue({o.client_order_id for o in venue_open})
        ours = [o for o in venue_open if is_ours(self.prefix, o.client_order_id)]
        # one read for the whole list: a venue may show thousands of our orders resting
        ledger_orders = await self.ledger.orders.get_many([o.client_order_id for o in ours])
        for venue_order in ours:
            coid = venue_order.client_order_id
            known = ledger_orders.get(coid)
            if known is None:
                report.unknown_orders.append(coid)
                reason = (
                    f"venue has an open order {coid} on {venue_order.symbol} with our prefix "
                    "that the ledger does not know"
                )
                await self.ledger.controls.set(
                    ControlScope.SYMBOL,
                    venue_order.symbol,
                    ControlKind.PAUSE,
                    reason=reason,
                    set_by="reconciler",
                )
                incident = await self.ledger.incidents.open(
                    kind="unknown_venue_order",
                    scope=f"symbol:{venue_order.symbol}",
                    severity="error",
                    message=(
                        f"symbol {venue_order.symbol} paused: {reason}. Check it on the venue "
                        f"(cancel it there if it is not wanted), then `tradectl resume --symbol "
                        f"{venue_order.symbol} --reason '…'` and resolve this incident"
                    ),
                    details={
                        "client_order_id": coid,
                        "venue_order_id": venue_order.venue_order_id,
                        "side": venue_order.side.value,
                        "quantity": str(venue_order.quantity),
                        "status": venue_order.status.value,
                    },
                    dedupe_key=f"unknown_venue_order:{coid}",
                )
                report.incidents.append(incident.id)
            elif known.state.is_terminal:
                # The ledger closed an order the venue still shows open: let the lookup apply
                # whatever the venue says (a terminal state never moves back; the event is kept).
                await self.ledger.orders.apply_report(
                    venue_order, cause="reconcile: venue shows open"
                )

    async def _closed_on_the_venue(self, venue_open: set[str]) -> None:
        """An acknowledged order the venue no longer lists as open closed while its report was
        lost (a crash before the commit, a dropped stream report): look it up, which applies
        its final state and brings its fills. Nothing else would: only unresolved orders are
        looked up on their own."""
        await self.execution.resolve_orders(
            [
                order
                for order in await self.ledger.orders.non_terminal()
                if order.state in _ACKNOWLEDGED and order.client_order_id not in venue_open
            ]
        )
