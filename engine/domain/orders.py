"""The order state machine.

The transition table is the single source of which state may follow which; the ledger applies a
transition with ``UPDATE … WHERE state = ANY(:allowed_from)`` using :func:`allowed_from`.

Events are past-tense facts (``SubmitAcknowledged``, ``FillApplied``, …); :func:`apply` folds one
into an :class:`Order` and returns a new one. Nothing here encodes time: an ambiguous submission
(``UNKNOWN``) only leaves that state on evidence from the venue (a status, a fill, an ack, or a
lookup that found nothing), never because a clock ran out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType

from engine.domain.types import (
    AccountId,
    ClientOrderId,
    DecisionId,
    OrderState,
    OrderType,
    Side,
    StrategyId,
    Symbol,
    TimeInForce,
    VenueName,
    VenueOrderId,
    VenueOrderStatus,
)
from engine.exceptions import TradectlError


@dataclass(frozen=True, slots=True, kw_only=True)
class Order:
    """An order as the ledger knows it. ``filled_qty``/``avg_price`` are derived from fills."""

    client_order_id: ClientOrderId
    decision_id: DecisionId
    strategy_id: StrategyId
    account: AccountId
    venue: VenueName
    symbol: Symbol
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    requested_qty: Decimal
    limit_price: Decimal | None
    state: OrderState
    venue_order_id: VenueOrderId | None
    created_at: datetime
    #: the intent's deadline: after it, an order never seen by the venue is not resent
    expires_at: datetime
    submitted_at: datetime | None = None
    acked_at: datetime | None = None
    venue_ts: datetime | None = None
    last_error: str | None = None
    lease_epoch: int | None = None
    filled_qty: Decimal = Decimal(0)
    avg_price: Decimal | None = None

    @property
    def remaining_qty(self) -> Decimal:
        return self.requested_qty - self.filled_qty

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal


class IllegalTransition(TradectlError):
    """An event that the order's current state cannot accept.

    This is a contradiction (a cancel for a filled order, an ack for a rejected one), not a race:
    stale or reordered venue reports are ignored by :func:`apply`, never raised.
    """


_S = OrderState

# Why each edge exists:
# - PENDING_SUBMIT is "reserved; maybe on the venue" (a crash between send and the UNKNOWN write
#   leaves it there), so every venue-reported state may follow it, as may UNKNOWN (ambiguous
#   submit), REJECTED (definitive refusal), EXPIRED (the intent died before it went on the wire, or
#   a lookup found nothing and the TTL is over) and PENDING_CANCEL (a halt while the submit is in
#   flight).
# - UNKNOWN leaves only on evidence: a venue status, a fill, an ack, or a lookup that found nothing
#   (→ PENDING_SUBMIT to resend with the same id, or → EXPIRED when the intent is no longer valid).
# - OPEN → REJECTED is absent: a venue never rejects an order it has acknowledged.
# - PARTIALLY_FILLED → OPEN is absent: fills are never undone (a NEW report after a fill is stale).
# - PENDING_CANCEL → OPEN / PARTIALLY_FILLED: the venue refused the cancel (or a report from before
#   the cancel arrived late; the cancel's own answer still moves the order on).
# - PENDING_CANCEL → EXPIRED also covers a cancel of an order that never reached the venue.
# - Terminal states have no exits: a late report never resurrects an order. Late fills on CANCELED
#   or EXPIRED orders are still recorded, without a state change.
# - No self-loops: staying in a state is not a transition (a second partial fill updates fields).
# Nothing here encodes time: no edge is taken because a clock ran out.
TRANSITIONS: Mapping[OrderState, frozenset[OrderState]] = MappingProxyType(
    {
        _S.PENDING_SUBMIT: frozenset(
            {
                _S.UNKNOWN,
                _S.OPEN,
                _S.PARTIALLY_FILLED,
                _S.FILLED,
                _S.CANCELED,
                _S.REJECTED,
                _S.EXPIRED,
                _S.PENDING_CANCEL,
            }
        ),
        _S.UNKNOWN: frozenset(
            {
                _S.PENDING_SUBMIT,
                _S.OPEN,
                _S.PARTIALLY_FILLED,
                _S.FILLED,
                _S.CANCELED,
                _S.REJECTED,
                _S.EXPIRED,
                _S.PENDING_CANCEL,
            }
        ),
        _S.OPEN: frozenset(
            {_S.PARTIALLY_FILLED, _S.FILLED, _S.PENDING_CANCEL, _S.CANCELED, _S.EXPIRED}
        ),
        _S.PARTIALLY_FILLED: frozenset({_S.FILLED, _S.PENDING_CANCEL, _S.CANCELED, _S.EXPIRED}),
        _S.PENDING_CANCEL: frozenset(
            {_S.CANCELED, _S.FILLED, _S.EXPIRED, _S.OPEN, _S.PARTIALLY_FILLED}
        ),
        _S.FILLED: frozenset(),
        _S.CANCELED: frozenset(),
        _S.REJECTED: frozenset(),
        _S.EXPIRED: frozenset(),
    }
)

_ALLOWED_FROM: Mapping[OrderState, frozenset[OrderState]] = MappingProxyType(
    {
        to: frozenset(frm for frm, targets in TRANSITIONS.items() if to in targets)
        for to in OrderState
    }
)


def allowed_from(to: OrderState) -> frozenset[OrderState]:
    """The states an order may be in for a move to ``to`` (empty for ``PENDING_SUBMIT``'s
    first insert; the reservation inserts, it does not transition)."""
    return _ALLOWED_FROM[to]


def can_transition(a: OrderState, b: OrderState) -> bool:
    return b in TRANSITIONS[a]


def _implied_state(
    venue_status: VenueOrderStatus, filled_qty: Decimal, requested_qty: Decimal
) -> OrderState:
    # The cumulative filled quantity is a fact; a non-terminal status next to a complete fill is
    # only a report that lagged behind it.
    complete = requested_qty > 0 and filled_qty >= requested_qty
    match venue_status:
        case VenueOrderStatus.NEW:
            if complete:
                return _S.FILLED
            return _S.PARTIALLY_FILLED if filled_qty > 0 else _S.OPEN
        case VenueOrderStatus.PARTIALLY_FILLED:
            return _S.FILLED if complete else _S.PARTIALLY_FILLED
        case VenueOrderStatus.PENDING_CANCEL:
            return _S.FILLED if complete else _S.PENDING_CANCEL
        case VenueOrderStatus.FILLED:
            return _S.FILLED
        case VenueOrderStatus.CANCELED:
            return _S.CANCELED
        case VenueOrderStatus.REJECTED:
            return _S.REJECTED
        case VenueOrderStatus.EXPIRED:
            # Binance reports IOC/FOK remainders and EXPIRED_IN_MATCH (self-trade prevention) so.
            return _S.EXPIRED


def target_state(
    current: OrderState,
    venue_status: VenueOrderStatus,
    filled_qty: Decimal,
    requested_qty: Decimal,
) -> OrderState:
    """The state a venue report implies for an order now in ``current``.

    A terminal ``current`` is returned unchanged (a late report never resurrects an order), and so
    is ``current`` when the implied state is not reachable from it: reports arrive reordered, and a
    stale one (``NEW`` after a partial fill) must not move the order backwards.
    """
    if filled_qty < 0:
        raise ValueError(f"filled_qty must be >= 0, got {filled_qty}")
    if current.is_terminal:
        return current
    implied = _implied_state(venue_status, filled_qty, requested_qty)
    if implied is current or can_transition(current, implied):
        return implied
    return current


# ---------------------------------------------------------------------------------------------
# Events: past-tense facts about one order.


def _check_aware(ts: datetime | None, what: str) -> None:
    if ts is not None and (ts.tzinfo is None or ts.utcoffset() is None):
        raise ValueError(f"{what} must be an aware UTC datetime, got naive {ts!r}")


def _check_positive(value: Decimal, what: str) -> None:
    if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
        raise ValueError(f"{what} must be a positive finite Decimal, got {value!r}")


def _check_non_negative(value: Decimal, what: str) -> None:
    if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
        raise ValueError(f"{what} must be a finite Decimal >= 0, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitAcknowledged:
    """The venue accepted the order (the submit answer, or a lookup that found it).

    ``filled_qty`` is the venue's cumulative filled quantity; it chooses the state only, the
    order's own ``filled_qty`` comes from :class:`FillApplied` so no fill is counted twice.
    """

    venue_order_id: VenueOrderId
    venue_ts: datetime | None
    acked_at: datetime
    status: VenueOrderStatus
    filled_qty: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        _check_aware(self.venue_ts, "venue_ts")
        _check_aware(self.acked_at, "acked_at")
        _check_non_negative(self.filled_qty, "filled_qty")
        if not self.venue_order_id:
            raise ValueError("an acknowledgement needs the venue order id")


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitAmbiguous:
    """The submit may or may not have placed the order (timeout, reset after send, 5xx, -1007)."""

    error: str
    at: datetime

    def __post_init__(self) -> None:
        _check_aware(self.at, "at")


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitRefused:
    """The venue definitively refused the submit: nothing was placed."""

    reason: str
    at: datetime

    def __post_init__(self) -> None:
        _check_aware(self.at, "at")


@dataclass(frozen=True, slots=True, kw_only=True)
class FillApplied:
    """One execution (already deduplicated by trade id) was recorded for the order."""

    qty: Decimal
    price: Decimal

    def __post_init__(self) -> None:
        _check_positive(self.qty, "fill qty")
        _check_positive(self.price, "fill price")


@dataclass(frozen=True, slots=True, kw_only=True)
class VenueStatusObserved:
    """A venue report of the order's status (stream, lookup or cancel answer).

    As with the ack, ``filled_qty`` is the venue's cumulative figure and only chooses the state.
    """

    status: VenueOrderStatus
    filled_qty: Decimal
    venue_ts: datetime | None

    def __post_init__(self) -> None:
        _check_aware(self.venue_ts, "venue_ts")
        _check_non_negative(self.filled_qty, "filled_qty")


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelRequested:
    """We asked the venue to cancel (or are about to; the cancel's answer follows as a status)."""

    at: datetime

    def __post_init__(self) -> None:
        _check_aware(self.at, "at")


@dataclass(frozen=True, slots=True, kw_only=True)
class ResubmitScheduled:
    """A lookup by client order id found nothing past the venue's consistency window, and the
    intent is still valid: the order goes back to ``PENDING_SUBMIT`` to be sent with the same id."""

    at: datetime

    def __post_init__(self) -> None:
        _check_aware(self.at, "at")


@dataclass(frozen=True, slots=True, kw_only=True)
class IntentExpired:
    """The order will not be (re)sent: its intent ran out or failed the final gate.

    ``not_found_on_venue`` states that a lookup by client order id found nothing past the venue's
    consistency window. It is required to expire an order that may be on the venue (``UNKNOWN``,
    ``PENDING_CANCEL``): an ambiguous submission is never resolved by the clock alone. For a
    ``PENDING_SUBMIT`` order the caller knows whether it was sent; after a restart it must have
    looked it up first.
    """

    reason: str
    at: datetime
    not_found_on_venue: bool = False

    def __post_init__(self) -> None:
        _check_aware(self.at, "at")
        if not self.reason:
            raise ValueError("an expiry needs a reason")


OrderEvent = (
    SubmitAcknowledged
    | SubmitAmbiguous
    | SubmitRefused
    | FillApplied
    | VenueStatusObserved
    | CancelRequested
    | ResubmitScheduled
    | IntentExpired
)


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _move(order: Order, to: OrderState, event: OrderEvent, **changes: object) -> Order:
    if to is not order.state and not can_transition(order.state, to):
        raise IllegalTransition(
            f"order {order.client_order_id}: {type(event).__name__} cannot move it from "
            f"{order.state} to {to}"
        )
    return dataclasses.replace(order, state=to, **changes)  # type: ignore[arg-type]


def _refuse(order: Order, event: OrderEvent, why: str) -> IllegalTransition:
    return IllegalTransition(
        f"order {order.client_order_id} is {order.state}: {type(event).__name__} {why}"
    )


def apply(order: Order, event: OrderEvent) -> Order:
    """Fold one event into ``order`` and return the new order (``order`` is not changed).

    Raises :class:`IllegalTransition` on contradictions. Stale venue reports are not
    contradictions: they leave the state as it is.
    """
    state = order.state
    match event:
        case SubmitAcknowledged():
            if state is _S.REJECTED:
                raise _refuse(order, event, "contradicts a definitive refusal; reconcile")
            if order.venue_order_id is not None and order.venue_order_id != event.venue_order_id:
                raise _refuse(
                    order,
                    event,
                    f"carries venue order id {event.venue_order_id} but the order is attached "
                    f"to {order.venue_order_id}: a duplicate order? reconcile before trading",
                )
            to = target_state(state, event.status, event.filled_qty, order.requested_qty)
            return _move(
                order,
                to,
                event,
                venue_order_id=event.venue_order_id,
                acked_at=order.acked_at or event.acked_at,
                venue_ts=_later(order.venue_ts, event.venue_ts),
            )
        case SubmitAmbiguous():
            # Only a pending submit becomes UNKNOWN; any other state already holds better
            # knowledge (a stream report can beat the timed-out REST answer).
            if state is _S.PENDING_SUBMIT:
                return _move(order, _S.UNKNOWN, event, last_error=event.error)
            return dataclasses.replace(order, last_error=event.error)
        case SubmitRefused():
            if state is _S.REJECTED:
                return order
            if state is not _S.PENDING_SUBMIT:
                raise _refuse(order, event, "only applies to an order being submitted")
            return _move(order, _S.REJECTED, event, last_error=event.reason)
        case FillApplied():
            return _apply_fill(order, event)
        case VenueStatusObserved():
            to = target_state(state, event.status, event.filled_qty, order.requested_qty)
            return _move(order, to, event, venue_ts=_later(order.venue_ts, event.venue_ts))
        case CancelRequested():
            if state is _S.PENDING_CANCEL:
                return order
            if state.is_terminal:
                raise _refuse(order, event, "has nothing left to cancel")
            return _move(order, _S.PENDING_CANCEL, event)
        case ResubmitScheduled():
            if state is _S.PENDING_SUBMIT:
                return order
            if state is not _S.UNKNOWN:
                raise _refuse(order, event, "only applies to an order whose submit was ambiguous")
            return _move(order, _S.PENDING_SUBMIT, event)
        case IntentExpired():
            if state is _S.PENDING_SUBMIT or (
                event.not_found_on_venue and state in (_S.UNKNOWN, _S.PENDING_CANCEL)
            ):
                return _move(order, _S.EXPIRED, event, last_error=event.reason)
            if state in (_S.UNKNOWN, _S.PENDING_CANCEL):
                raise _refuse(
                    order, event, "needs a lookup that found nothing: the order may be placed"
                )
            raise _refuse(order, event, "does not apply: the venue decides when it expires")
    raise TypeError(f"not an order event: {event!r}")  # pragma: no cover


def _apply_fill(order: Order, event: FillApplied) -> Order:
    state = order.state
    if state is _S.REJECTED:
        raise _refuse(order, event, "on an order the venue refused; reconcile")
    filled = order.filled_qty + event.qty
    if filled > order.requested_qty:
        raise _refuse(
            order,
            event,
            f"of {event.qty} would fill {filled} of {order.requested_qty}: overfill; reconcile",
        )
    notional = (order.avg_price or Decimal(0)) * order.filled_qty + event.price * event.qty
    avg_price = notional / filled
    if state.is_terminal:
        # A late fill on a CANCELED/EXPIRED order (or one reported FILLED before its fills
        # arrived) is a fact to keep; the state stays.
        to = state
    elif filled == order.requested_qty:
        to = _S.FILLED
    elif state is _S.PENDING_CANCEL:
        to = state  # the cancel is still in flight
    else:
        to = _S.PARTIALLY_FILLED
    return _move(order, to, event, filled_qty=filled, avg_price=avg_price)
