"""Alerts: which facts need a human now, how urgently, and what the message says.

Pure: every function here turns facts into an :class:`AlertDraft` (level, kind, scope, an
actionable message, details). Writing it (the ``alerts`` outbox, in the transaction of the fact
where there is one) is :mod:`engine.ledger.alerts`; delivering it, with the cooldown, is
:mod:`engine.alerting`.

A message says what happened and what to do, naming the ``tradectl`` commands that exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from engine.domain.formatting import plain


class AlertLevel(StrEnum):
    CRITICAL = "CRITICAL"  #: trading stopped or the ledger disagrees with the venue
    HIGH = "HIGH"  #: trading is at risk: look soon
    MEDIUM = "MEDIUM"  #: the venue refused something
    LOW = "LOW"  #: worth knowing


#: the placeholder an incident's alert message carries until the incident has its id
INCIDENT_ID = "{incident}"


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertDraft:
    """One alert before it is stored. Repeats of the same ``(level, kind, scope)`` within the
    cooldown are folded into the first one."""

    level: AlertLevel
    kind: str
    scope: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


# -- from incidents ------------------------------------------------------------------------------

#: incidents of the reconciler: the ledger and the venue disagree, and trading is paused
_MISMATCH_INCIDENTS = {
    "balance_drift": "balance_drift",
    "external_trade": "external_trade",
    "unknown_venue_order": "order_mismatch",
    "fills_missing": "order_mismatch",
}
#: incidents whose fact alerts by itself: the halt control written with them
_ALERTED_BY_THEIR_HALT = frozenset({"loss_limit", "auth_failed"})


def incident_alert(*, kind: str, scope: str, message: str) -> AlertDraft | None:
    """The alert an incident raises when it is opened (``None``: its fact has its own alert,
    the halt). An incident of a kind not named here still alerts, HIGH: what needs a human is
    never dropped because nobody listed it."""
    if kind in _ALERTED_BY_THEIR_HALT:
        return None
    if kind in _MISMATCH_INCIDENTS:
        return AlertDraft(
            level=AlertLevel.CRITICAL,
            kind=_MISMATCH_INCIDENTS[kind],
            scope=scope,
            message=(
                f"Reconciliation mismatch: {message}. Reconciliation incident {INCIDENT_ID} is "
                "open (`tradectl incidents`)."
            ),
            details={"incident_kind": kind},
        )
    if kind == "venue_disconnected":
        return AlertDraft(
            level=AlertLevel.CRITICAL,
            kind="venue_disconnected",
            scope=scope,
            message=(
                f"{message}. Working orders stay on the venue; each strategy's on_disconnect "
                f"policy applies when it returns. Incident {INCIDENT_ID} is open."
            ),
            details={"incident_kind": kind},
        )
    if kind == "strategy_failed":
        return AlertDraft(
            level=AlertLevel.HIGH,
            kind="strategy_paused",
            scope=scope,
            message=f"Paused by the engine: {message}. Incident {INCIDENT_ID} is open.",
            details={"incident_kind": kind},
        )
    return AlertDraft(
        level=AlertLevel.HIGH,
        kind=kind,
        scope=scope,
        message=f"{message}. Incident {INCIDENT_ID} is open (`tradectl incidents`).",
        details={"incident_kind": kind},
    )


# -- from the engine's own facts -----------------------------------------------------------------


def halted_alert(*, account: str, reason: str) -> AlertDraft:
    return AlertDraft(
        level=AlertLevel.CRITICAL,
        kind="trading_halted",
        scope=f"account:{account}",
        message=(
            f"Trading halted for account {account} by a risk limit: {reason}. No new orders are "
            "placed until an operator lifts it. Review positions and P&L with `tradectl status`, "
            "then `tradectl unhalt --reason '…'` when trading may go on."
        ),
        details={"reason": reason},
    )


def auth_halted_alert(*, account: str, error: str) -> AlertDraft:
    return AlertDraft(
        level=AlertLevel.CRITICAL,
        kind="trading_halted",
        scope=f"account:{account}",
        message=(
            f"Trading halted for account {account}: the venue refused the API key ({error}). "
            "Check the key and its permissions, then `tradectl unhalt --reason '…'`."
        ),
        details={"error": error},
    )


def rejected_alert(
    *,
    client_order_id: str,
    strategy_id: str,
    symbol: str,
    side: str,
    quantity: Decimal,
    reason: str,
) -> AlertDraft:
    return AlertDraft(
        level=AlertLevel.MEDIUM,
        kind="order_rejected",
        scope=f"strategy:{strategy_id}:{symbol}",
        message=(
            f"The venue rejected order {client_order_id} ({side} {quantity:f} {symbol}, "
            f"strategy {strategy_id}): {reason}. Nothing was placed. Its decision and events are "
            "in the `decision_trace` view (`tradectl sql`); if every order is rejected, "
            f"`tradectl pause --strategy {strategy_id} --reason '…'` and check its sizes and "
            "the balances."
        ),
        details={
            "client_order_id": client_order_id,
            "strategy": strategy_id,
            "symbol": symbol,
            "reason": reason,
        },
    )


def lease_lost_alert(*, account: str, holder: str, error: str) -> AlertDraft:
    return AlertDraft(
        level=AlertLevel.CRITICAL,
        kind="lease_lost",
        scope=f"account:{account}",
        message=(
            f"The engine {holder} lost the lease of account {account} and stopped placing "
            f"orders: {error}. Another engine took the account over, or this one could not "
            "renew in time. Check which process runs the account (`tradectl status`); restart "
            "this one only if no other engine is running."
        ),
        details={"holder": holder, "error": error},
    )


def disconnected_alert(*, account: str, venue: str, down_s: float, error: str) -> AlertDraft:
    return AlertDraft(
        level=AlertLevel.CRITICAL,
        kind="venue_disconnected",
        scope=f"venue:{venue}",
        message=(
            f"Account {account} has had no connection to {venue} for {down_s:.0f}s "
            f"(last error: {error}). Fills and order updates are not arriving; the engine keeps "
            "reconnecting and reconciles when it is back. Check the venue's status and this "
            "host's network; once it is back, `tradectl cancel-all --reason '…'` if exposure "
            "must go."
        ),
        details={"venue": venue, "down_s": round(down_s, 1), "error": error},
    )


def unknown_order_alert(
    *, client_order_id: str, symbol: str, since: datetime, age_s: float
) -> AlertDraft:
    return AlertDraft(
        level=AlertLevel.HIGH,
        kind="order_unknown",
        scope=f"order:{client_order_id}",
        message=(
            f"Order {client_order_id} on {symbol} has been UNKNOWN for {age_s:.0f}s (since "
            f"{since.isoformat(timespec='seconds')}): it was sent, and the venue has not said "
            "whether it exists. The engine keeps looking it up; check it on the venue and "
            "run `tradectl reconcile --reason '…'`."
        ),
        details={"client_order_id": client_order_id, "symbol": symbol, "age_s": round(age_s)},
    )


def loss_warning_alert(
    *, account: str, scope: str, loss: Decimal, limit: Decimal, fraction: Decimal
) -> AlertDraft:
    return AlertDraft(
        level=AlertLevel.HIGH,
        kind="daily_loss",
        scope=scope,
        message=(
            f"Daily loss of {scope} in account {account} is {loss:f}, "
            f"{fraction * 100:.0f}% of its limit {limit:f}; at the limit trading halts. Review "
            "the positions with `tradectl status`; `tradectl halt --reason '…'` stops early."
        ),
        details={"loss": str(loss), "limit": str(limit)},
    )


def test_alert(*, account: str, by: str) -> AlertDraft:
    return AlertDraft(
        level=AlertLevel.LOW,
        kind="test",
        scope=f"account:{account}",
        message=(
            f"Test alert for account {account} from `tradectl alerts test` ({by}): if you "
            "read this, the channel works. Nothing to do."
        ),
    )


def summary_message(
    *,
    count: int,
    kind: str,
    scope: str,
    first: datetime,
    last: datetime,
    cooldown_s: float,
    latest: str,
) -> str:
    """The summary of repeats that the cooldown held back, ending with the newest of them."""
    return (
        f"{count} more {kind} alert(s) for {scope} between {first.isoformat(timespec='seconds')} "
        f"and {last.isoformat(timespec='seconds')} were held back by the cooldown "
        f"({cooldown_s:g}s; `tradectl alerts` lists them). The newest: {latest}"
    )


def retry_delay_s(attempts: int, *, base_s: float, max_s: float) -> float:
    """Backoff after ``attempts`` failed deliveries: doubling from ``base_s`` up to ``max_s``."""
    return float(min(max_s, base_s * 2 ** max(0, min(attempts - 1, 30))))


def rate_limited_alert(*, account: str, venue: str, error: str, retry_after_s: float) -> AlertDraft:
    return AlertDraft(
        level=AlertLevel.MEDIUM,
        kind="rate_limited",
        scope=f"venue:{venue}",
        message=(
            f"{venue} rate-limited account {account} ({error}); the engine backs off for "
            f"{retry_after_s:g}s and looks up the order it was sending. Repeated limits risk a "
            "ban: slow the strategies down, or pause some with "
            "`tradectl pause --strategy … --reason '…'`."
        ),
        details={"venue": venue, "error": error, "retry_after_s": retry_after_s},
    )


#: a daily loss past this fraction of its limit is a HIGH alert (at the limit trading halts)
LOSS_WARNING_FRACTION = Decimal("0.5")


def loss_warning(loss: Decimal, limit: Decimal) -> Decimal | None:
    """The fraction of the limit a loss has reached, when it is past the warning fraction (and
    not yet over the limit, which halts and alerts on its own)."""
    if limit <= 0 or loss <= 0:
        return None
    fraction = loss / limit
    return fraction if LOSS_WARNING_FRACTION <= fraction <= 1 else None


def partial_fill_alert(
    *,
    client_order_id: str,
    strategy_id: str,
    symbol: str,
    filled: Decimal,
    requested: Decimal,
) -> AlertDraft:
    return AlertDraft(
        level=AlertLevel.LOW,
        kind="partial_fill",
        scope=f"strategy:{strategy_id}:{symbol}",
        message=(
            f"Order {client_order_id} of strategy {strategy_id} on {symbol} is partially filled "
            f"({filled:f} of {requested:f}); the rest is still working. Nothing to do unless it "
            f"should not rest: `tradectl cancel-all --strategy {strategy_id} --reason '…'` "
            "cancels the strategy's open orders."
        ),
        details={"client_order_id": client_order_id, "filled": str(filled)},
    )


#: below this share of the requested quantity filled, over the window, is a HIGH alert
FILL_RATE_WARNING = Decimal("0.5")


def fill_rate_alert(
    *,
    strategy_id: str,
    orders: int,
    requested: Decimal,
    filled: Decimal,
    window_s: float,
) -> AlertDraft | None:
    """A strategy whose closed orders of the window filled less than half of what they asked
    for (``None`` when it filled enough)."""
    if requested <= 0 or filled / requested >= FILL_RATE_WARNING:
        return None
    share = filled / requested
    return AlertDraft(
        level=AlertLevel.HIGH,
        kind="fill_rate",
        scope=f"strategy:{strategy_id}",
        message=(
            f"Strategy {strategy_id} filled {share * 100:.0f}% of what its last {orders} closed "
            f"orders asked for in the past {window_s / 60:g} min ({filled:f} of {requested:f}). "
            "Its prices may be off the market or its orders expire too soon: check its "
            "decisions in `decision_trace` / `execution_quality` (`tradectl sql`), and "
            f"`tradectl pause --strategy {strategy_id} --reason '…'` if it should stop."
        ),
        details={"orders": orders, "requested": str(requested), "filled": str(filled)},
    )


def slippage_bps(buy: bool, reference: Decimal, avg_price: Decimal) -> Decimal:
    """How much worse than ``reference`` an order filled, in bps (negative: better)."""
    worse = avg_price - reference if buy else reference - avg_price
    return worse / reference * 10_000


def slippage_alert(
    *,
    client_order_id: str,
    strategy_id: str,
    symbol: str,
    buy: bool,
    reference: Decimal,
    reference_name: str,
    avg_price: Decimal,
    threshold_bps: Decimal,
) -> AlertDraft | None:
    """An order that filled more than ``threshold_bps`` worse than the price it was expected
    to fill at (``None`` when it did not). A limit order is held to its limit: crossing a wide
    spread at a price the strategy named is its choice, not slippage; a market order to the
    price the strategy decided on."""
    if reference <= 0:
        return None
    bps = slippage_bps(buy, reference, avg_price)
    if bps <= threshold_bps:
        return None
    return AlertDraft(
        level=AlertLevel.HIGH,
        kind="slippage",
        scope=f"strategy:{strategy_id}",
        message=(
            f"Unusual slippage: order {client_order_id} of strategy {strategy_id} on {symbol} "
            f"filled at {plain(avg_price)} on average against its {reference_name} "
            f"{plain(reference)}, {bps:.0f} bps worse (alert above {plain(threshold_bps)} bps). "
            f"The book may be thin or the order too large for it: `tradectl explain "
            f"{client_order_id}` shows its fills; `tradectl pause --strategy {strategy_id} "
            "--reason '…'` if it keeps happening."
        ),
        details={
            "client_order_id": client_order_id,
            "symbol": symbol,
            "reference": reference_name,
            "reference_price": str(reference),
            "avg_price": str(avg_price),
            "slippage_bps": str(bps.quantize(Decimal("0.01"))),
        },
    )
