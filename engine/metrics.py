"""The engine's Prometheus metrics, each updated by the code path it measures.

Every metric carries an ``account`` label: the registry is process-global and one process may
run several accounts' engines (tests do), and no series may mix two accounts.

The hot path (an intent becoming an order, a fill being recorded) pays a dictionary lookup per
update: label children are cached per label tuple, so no label formatting happens per order.
Gauges that describe the ledger (orders by state, P&L, incidents) are set by one periodic task
(:mod:`engine.account_gauges`); venue-side metrics live in ``engine/venues/metrics.py``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

from engine.domain.orders import Order
from engine.domain.risk import Verdict
from engine.domain.types import DecisionOutcome, Side, StrategyId, Symbol, VerdictResult
from engine.ledger.records import DecisionRecord, Reservation, ReserveResult, ReserveStatus
from engine.venues.base import FillReport, InstrumentRules


def _metric(kind: type[Any], name: str, doc: str, labels: tuple[str, ...], **kw: Any) -> Any:
    # A re-import (tests reloading a module) must not register the same name twice.
    existing = REGISTRY._names_to_collectors.get(name)
    if existing is not None:
        return existing
    return kind(name, doc, labels, **kw)


MARKETDATA_TO_ACK = _metric(
    Histogram,
    "tradectl_marketdata_to_ack_seconds",
    "From the market-data timestamp a decision used (md_ts) to the venue's acknowledgement",
    ("account", "strategy", "symbol"),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DECISIONS = _metric(
    Counter,
    "tradectl_decisions_total",
    "Strategy decisions by outcome (order, resized, hold, denied, cancel, existing)",
    ("account", "strategy", "outcome"),
)
DECISIONS_SKIPPED = _metric(
    Counter,
    "tradectl_decisions_skipped_total",
    "Intents denied or dropped, by the failing check or reason (one per failing check)",
    ("account", "strategy", "check"),
)
ORDERS = _metric(
    Gauge, "tradectl_orders", "Orders in the ledger by state (non-terminal states)",
    ("account", "state"),
)  # fmt: skip
OLDEST_ORDER_AGE = _metric(
    Gauge,
    "tradectl_oldest_order_age_seconds",
    "Age of the oldest order in PENDING_SUBMIT / UNKNOWN (0 when none)",
    ("account", "state"),
)
FILLS = _metric(
    Counter, "tradectl_fills_total", "Fills recorded", ("account", "strategy", "symbol")
)
FEES = _metric(
    Counter, "tradectl_fees_total", "Fees paid, in the fee asset", ("account", "strategy", "asset")
)
SLIPPAGE_BPS = _metric(
    Histogram,
    "tradectl_slippage_bps",
    "Fill price vs the order's limit price in basis points; positive is worse (paid more)",
    ("account", "strategy"),
    # Signed observations, non-negative buckets: a fill better than its limit counts in le=0,
    # and _sum (the mean) stays exposed, which the client drops for a negative bucket.
    buckets=(0, 0.5, 1, 2, 5, 10, 20, 50, 100),
)
ASSUMED_SLIPPAGE_BPS = _metric(
    Gauge,
    "tradectl_assumed_slippage_bps",
    "The strategy's configured slippage assumption (assumed_slippage_bps)",
    ("account", "strategy"),
)
ASSUMED_FEE_BPS = _metric(
    Gauge,
    "tradectl_assumed_fee_bps",
    "The strategy's configured fee assumption (assumed_fee_bps)",
    ("account", "strategy"),
)
FEE_BPS = _metric(
    Histogram,
    "tradectl_fee_bps",
    "Fee of a fill as basis points of its notional (fees in the base or quote asset)",
    ("account", "strategy"),
    buckets=(0, 1, 2, 5, 7.5, 10, 15, 20, 30, 50, 100),
)
BALANCE_DIFFERENCE = _metric(
    Gauge,
    "tradectl_balance_difference",
    "Ledger-expected minus venue balance per asset, at the reconciler's last comparison",
    ("account", "asset"),
)
PNL_REALIZED = _metric(
    Gauge,
    "tradectl_pnl_realized",
    "Realized P&L in the quote asset (average cost, net of fees)",
    ("account", "strategy", "symbol"),
)
PNL_UNREALIZED = _metric(
    Gauge,
    "tradectl_pnl_unrealized",
    "Unrealized P&L in the quote asset at the latest mid",
    ("account", "strategy", "symbol"),
)
RISK_UTILIZATION = _metric(
    Gauge,
    "tradectl_risk_utilization",
    "Exposure / limit per configured limit (1 = at the limit; strategy '*' = account limits)",
    ("account", "strategy", "limit"),
)
ERRORS = _metric(
    Counter,
    "tradectl_errors_total",
    "Errors logged by the engine's tasks, by component",
    ("account", "component"),
)
LEASE_HELD = _metric(
    Gauge, "tradectl_lease_held", "1 while this process holds the account lease", ("account",)
)
CONTROLS_ACTIVE = _metric(
    Gauge,
    "tradectl_controls_active",
    "Active controls covering the account, by kind",
    ("account", "kind"),
)
INCIDENTS_OPEN = _metric(
    Gauge, "tradectl_incidents_open", "Open incidents by severity", ("account", "severity")
)
OPERATOR_WAKEUPS = _metric(
    Counter,
    "tradectl_operator_wakeups_total",
    "Operator work woken by a NOTIFY on the account's channel, or after the listening "
    "connection (re)connected (via)",
    ("account", "via"),
)
RECONCILE_PASSES = _metric(
    Counter,
    "tradectl_reconcile_passes_total",
    "Periodic reconciliation passes by outcome: done, failed, or deferred (the venue's read "
    "budget was low: orders, cancels and lookups keep it)",
    ("account", "outcome"),
)
SETTLEMENTS = _metric(
    Counter,
    "tradectl_settlements_recorded",
    "Market settlements recorded in the ledger, by where they were first seen (rest, stream)",
    ("account", "venue", "source"),
)

_BPS = 10_000.0
#: how engine.domain.intents.intent_kind names a Cancel in a decision record
_CANCEL = "cancel"
#: fills remembered per account for counting each trade once (ack, stream and lookup repeat it)
_SEEN_CAPACITY = 20_000
#: orders remembered per account for attributing a fill that arrives without its order
_ORDERS_CAPACITY = 20_000
#: severities an incident may have: reported as 0 when none is open, so a panel shows them
SEVERITIES = ("info", "warning", "error", "critical")


class _Children:
    """Label children of one metric, cached by label tuple (``labels()`` parses every call)."""

    __slots__ = ("_cache", "_metric")

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._cache: dict[tuple[str, ...], Any] = {}

    def __call__(self, *labels: str) -> Any:
        child = self._cache.get(labels)
        if child is None:
            child = self._cache[labels] = self._metric.labels(*labels)
        return child


_ERRORS = _Children(ERRORS)


def error(account: str, component: str) -> None:
    """An error path was taken (logged): counted per account and component."""
    _ERRORS(account, component).inc()


def reconcile_pass(account: str, outcome: str) -> None:
    RECONCILE_PASSES.labels(account, outcome).inc()


def lease_held(account: str, held: bool) -> None:
    LEASE_HELD.labels(account).set(1 if held else 0)


def operator_wakeup(account: str, via: str) -> None:
    OPERATOR_WAKEUPS.labels(account, via).inc()


def controls_active(account: str, kinds: Iterable[str], *, all_kinds: Iterable[str]) -> None:
    """Every kind in ``all_kinds`` is set (0 when none is active): a lifted control must read 0,
    not keep its last value."""
    counts = dict.fromkeys(all_kinds, 0)
    for kind in kinds:
        counts[kind] = counts.get(kind, 0) + 1
    for kind, count in counts.items():
        CONTROLS_ACTIVE.labels(account, kind).set(count)


def balance_differences(account: str, differences: Mapping[str, Decimal]) -> None:
    for asset, difference in differences.items():
        BALANCE_DIFFERENCE.labels(account, asset).set(float(difference))


def assumptions(
    account: str, strategy: str, *, fee_bps: Decimal | None, slippage_bps: Decimal | None
) -> None:
    """A strategy's configured cost assumptions, next to the realized ones on a dashboard."""
    if fee_bps is not None:
        ASSUMED_FEE_BPS.labels(account, strategy).set(float(fee_bps))
    if slippage_bps is not None:
        ASSUMED_SLIPPAGE_BPS.labels(account, strategy).set(float(slippage_bps))


class _OrderInfo:
    __slots__ = ("limit_price", "side", "strategy")

    def __init__(self, strategy: str, side: Side, limit_price: Decimal | None) -> None:
        self.strategy = strategy
        self.side = side
        self.limit_price = None if limit_price is None else float(limit_price)


class ExecutionMetrics:
    """One account's decision, latency and fill metrics, fed by the execution coroutine."""

    def __init__(self, account: str, rules: Mapping[Symbol, InstrumentRules] | None = None) -> None:
        self.account = account
        #: the venue's rules per symbol (execution's cache): which asset a fee was paid in
        self._rules: Mapping[Symbol, InstrumentRules] = rules if rules is not None else {}
        self._decisions = _Children(DECISIONS)
        self._skipped = _Children(DECISIONS_SKIPPED)
        self._latency = _Children(MARKETDATA_TO_ACK)
        self._series: dict[tuple[str, str], _FillSeries] = {}
        # Bounded, oldest first out: OrderedDicts, because deleting a plain dict's first key
        # over and over makes finding the next one a walk over the deleted slots before it
        # (6.7 µs an eviction at 20,000 entries, every order once full, against 0.2)
        self._md_ts: OrderedDict[str, datetime] = OrderedDict()
        self._orders: OrderedDict[str, _OrderInfo] = OrderedDict()
        self._seen: OrderedDict[tuple[str, str, str], None] = OrderedDict()

    # -- decisions -----------------------------------------------------------------------------

    def decided(self, record: DecisionRecord) -> None:
        """A hold, a denial or a cancel decision was recorded."""
        strategy = record.strategy_id
        if record.outcome is DecisionOutcome.HOLD:
            outcome = "hold"
        elif record.outcome is DecisionOutcome.DENIED:
            outcome = "denied"
            for verdict in record.verdicts:
                if verdict.result is VerdictResult.REJECT:
                    self._skipped(self.account, strategy, verdict.check).inc()
        else:
            outcome = "cancel" if record.intent == _CANCEL else "order"
        self._decisions(self.account, strategy, outcome).inc()

    def reserved(
        self, reservations: Sequence[Reservation], results: Sequence[ReserveResult]
    ) -> None:
        """A batch's reserve transaction answered (one result per reservation, in order)."""
        # not strict: a miscount must never raise into the reserve path
        for reservation, result in zip(reservations, results, strict=False):
            decision = reservation.decision
            strategy = decision.strategy_id
            if result.status is ReserveStatus.BLOCKED:
                self._decisions(self.account, strategy, "denied").inc()
                self._skipped(self.account, strategy, "control").inc()
                continue
            if result.status is ReserveStatus.EXISTING:
                self._decisions(self.account, strategy, "existing").inc()
            else:
                resized = any(v.result is VerdictResult.RESIZE for v in decision.verdicts)
                self._decisions(self.account, strategy, "resized" if resized else "order").inc()
                self._md_ts[reservation.client_order_id] = decision.md_ts
                if len(self._md_ts) > _ORDERS_CAPACITY:
                    # never acknowledged (rejected, unknown, expired): forget the oldest
                    self._md_ts.popitem(last=False)
            if result.order is not None:
                self.remember(result.order)

    def refused_at_final_gate(self, strategy: str, rejections: Iterable[Verdict]) -> None:
        """A reserved order the final gate kept off the wire (expired, never sent)."""
        for verdict in rejections:
            self._skipped(self.account, strategy, verdict.check).inc()

    def dropped(self, strategies: Iterable[StrategyId], reason: str) -> None:
        """Intents dropped before any decision was recorded (the ledger was away)."""
        for strategy in strategies:
            self._skipped(self.account, strategy, reason).inc()

    # -- orders --------------------------------------------------------------------------------

    def remember(self, order: Order) -> None:
        """Who placed ``order``: fills that arrive with only its client order id are
        attributed to its strategy."""
        orders = self._orders
        if order.client_order_id not in orders:
            orders[order.client_order_id] = _OrderInfo(
                order.strategy_id, order.side, order.limit_price
            )
            if len(orders) > _ORDERS_CAPACITY:
                orders.popitem(last=False)

    def acked(self, order: Order, received_at: datetime) -> None:
        """The venue acknowledged ``order`` at ``received_at`` (local receipt)."""
        md_ts = self._md_ts.pop(order.client_order_id, None)
        if md_ts is not None:
            self._latency(self.account, order.strategy_id, order.symbol).observe(
                (received_at - md_ts).total_seconds()
            )

    # -- fills ---------------------------------------------------------------------------------

    def counting_fills(
        self, on_fills: Callable[[Sequence[FillReport]], None]
    ) -> Callable[[Sequence[FillReport]], None]:
        """``on_fills`` that also counts each fill (once per trade id)."""

        def both(fills: Sequence[FillReport]) -> None:
            if fills:
                self.fills(fills)
            on_fills(fills)

        return both

    def fills(self, fills: Sequence[FillReport], order: Order | None = None) -> None:
        """Fills this process saw recorded; each trade counts once, however often it comes
        (ack, stream, lookup, trade query)."""
        if order is not None:
            self.remember(order)
        seen = self._seen
        for fill in fills:
            key = (fill.venue, fill.symbol, fill.trade_id)
            if key in seen:
                continue
            seen[key] = None
            if len(seen) > _SEEN_CAPACITY:
                seen.popitem(last=False)
            self._count(fill)

    def _count(self, fill: FillReport) -> None:
        info = self._orders.get(fill.client_order_id) if fill.client_order_id else None
        # a fill of no order of ours is a trade made outside tradectl (the reconciler reports it)
        strategy = info.strategy if info else ("unknown" if fill.client_order_id else "external")
        series = self._series.get((strategy, fill.symbol))
        if series is None:
            series = self._series[(strategy, fill.symbol)] = _FillSeries(
                self.account, strategy, fill.symbol
            )
        series.fills.inc()
        # floats from here: these are observations, not money kept anywhere
        price, fee = float(fill.price), float(fill.fee)
        notional = float(fill.quantity) * price
        if fee and fill.fee_asset is not None:
            series.fees(fill.fee_asset).inc(fee)
        if notional > 0:
            rules = self._rules.get(fill.symbol)
            if not fee:
                series.fee_bps.observe(0.0)
            elif rules is not None and fill.fee_asset == rules.quote_asset:
                series.fee_bps.observe(fee / notional * _BPS)
            elif rules is not None and fill.fee_asset == rules.base_asset:
                series.fee_bps.observe(fee * price / notional * _BPS)
            # else a third-asset fee (BNB): no price for it here
        if info is not None and info.limit_price:
            limit = info.limit_price
            worse = price - limit if info.side is Side.BUY else limit - price
            series.slippage.observe(worse / limit * _BPS)


class _FillSeries:
    """The children one (strategy, symbol) updates per fill: one lookup per fill, not four."""

    __slots__ = ("_fees", "account", "fee_bps", "fills", "slippage", "strategy")

    def __init__(self, account: str, strategy: str, symbol: str) -> None:
        self.account, self.strategy = account, strategy
        self.fills = FILLS.labels(account, strategy, symbol)
        self.fee_bps = FEE_BPS.labels(account, strategy)
        self.slippage = SLIPPAGE_BPS.labels(account, strategy)
        self._fees: dict[str, Any] = {}

    def fees(self, asset: str) -> Any:
        child = self._fees.get(asset)
        if child is None:
            child = self._fees[asset] = FEES.labels(self.account, self.strategy, asset)
        return child
