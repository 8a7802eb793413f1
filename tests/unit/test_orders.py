"""The order state machine: the table, target_state and apply."""

from __future__ import annotations

import contextlib
import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.domain.orders import (
    TRANSITIONS,
    CancelRequested,
    FillApplied,
    IllegalTransition,
    IntentExpired,
    Order,
    OrderEvent,
    ResubmitScheduled,
    SubmitAcknowledged,
    SubmitAmbiguous,
    SubmitRefused,
    VenueStatusObserved,
    allowed_from,
    apply,
    can_transition,
    target_state,
)
from engine.domain.types import (
    TERMINAL_STATES,
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

S = OrderState
V = VenueOrderStatus
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
REQUESTED = Decimal(10)


def make_order(state: OrderState = S.PENDING_SUBMIT, **overrides: Any) -> Order:
    fields: dict[str, Any] = {
        "client_order_id": ClientOrderId("tc-abc"),
        "decision_id": DecisionId("dec-1"),
        "strategy_id": StrategyId("s1"),
        "account": AccountId("main"),
        "venue": VenueName("binance"),
        "symbol": Symbol("BTCUSDT"),
        "side": Side.BUY,
        "type": OrderType.LIMIT,
        "time_in_force": TimeInForce.GTC,
        "requested_qty": REQUESTED,
        "limit_price": Decimal(100),
        "state": state,
        "venue_order_id": None,
        "created_at": T0,
        "expires_at": T0 + timedelta(seconds=30),
    }
    fields.update(overrides)
    return Order(**fields)


def ack(
    status: VenueOrderStatus = V.NEW, filled: Decimal = Decimal(0), voi: str = "42"
) -> SubmitAcknowledged:
    return SubmitAcknowledged(
        venue_order_id=VenueOrderId(voi),
        venue_ts=T0,
        acked_at=T0 + timedelta(milliseconds=5),
        status=status,
        filled_qty=filled,
    )


def seen(status: VenueOrderStatus, filled: Decimal = Decimal(0)) -> VenueStatusObserved:
    return VenueStatusObserved(status=status, filled_qty=filled, venue_ts=T0)


# --- the table ---------------------------------------------------------------------------------


def test_every_state_has_a_row_in_the_table() -> None:
    assert set(TRANSITIONS) == set(OrderState)


def test_terminal_states_have_no_exits() -> None:
    for state in TERMINAL_STATES:
        assert TRANSITIONS[state] == frozenset()


def test_allowed_from_is_the_inverse_of_the_table() -> None:
    for to in OrderState:
        assert allowed_from(to) == {a for a in OrderState if to in TRANSITIONS[a]}
        for a in OrderState:
            assert (a in allowed_from(to)) == can_transition(a, to)


def test_nothing_transitions_into_pending_submit_but_a_resubmission_of_unknown() -> None:
    assert allowed_from(S.PENDING_SUBMIT) == {S.UNKNOWN}


def test_an_acknowledged_order_is_never_rejected() -> None:
    assert S.OPEN not in allowed_from(S.REJECTED)
    assert S.PARTIALLY_FILLED not in allowed_from(S.REJECTED)


def test_fills_are_never_undone() -> None:
    assert not can_transition(S.PARTIALLY_FILLED, S.OPEN)


def test_no_self_transitions() -> None:
    for state in OrderState:
        assert not can_transition(state, state)


# --- target_state ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "status", "filled", "expected"),
    [
        (S.PENDING_SUBMIT, V.NEW, "0", S.OPEN),
        (S.PENDING_SUBMIT, V.NEW, "3", S.PARTIALLY_FILLED),
        (S.UNKNOWN, V.NEW, "0", S.OPEN),
        (S.UNKNOWN, V.FILLED, "10", S.FILLED),
        (S.OPEN, V.PARTIALLY_FILLED, "3", S.PARTIALLY_FILLED),
        (S.OPEN, V.CANCELED, "0", S.CANCELED),
        (S.PARTIALLY_FILLED, V.CANCELED, "3", S.CANCELED),
        (S.OPEN, V.PENDING_CANCEL, "0", S.PENDING_CANCEL),
        (S.PENDING_SUBMIT, V.REJECTED, "0", S.REJECTED),
        (S.OPEN, V.EXPIRED, "4", S.EXPIRED),
        (S.PENDING_CANCEL, V.NEW, "0", S.OPEN),
        (S.PENDING_CANCEL, V.NEW, "2", S.PARTIALLY_FILLED),
        (S.PENDING_CANCEL, V.CANCELED, "2", S.CANCELED),
    ],
)
def test_target_state_maps_venue_reports(
    current: OrderState, status: VenueOrderStatus, filled: str, expected: OrderState
) -> None:
    assert target_state(current, status, Decimal(filled), REQUESTED) is expected


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATES))
@pytest.mark.parametrize("status", list(VenueOrderStatus))
def test_a_late_report_never_resurrects_a_terminal_order(
    terminal: OrderState, status: VenueOrderStatus
) -> None:
    assert target_state(terminal, status, Decimal(1), REQUESTED) is terminal


def test_a_stale_new_report_after_a_fill_keeps_the_order_partially_filled() -> None:
    assert target_state(S.PARTIALLY_FILLED, V.NEW, Decimal(0), REQUESTED) is S.PARTIALLY_FILLED


def test_an_acknowledged_order_reported_rejected_keeps_its_state() -> None:
    assert target_state(S.OPEN, V.REJECTED, Decimal(0), REQUESTED) is S.OPEN


def test_a_complete_cumulative_fill_means_filled_whatever_the_lagging_status() -> None:
    assert target_state(S.OPEN, V.PARTIALLY_FILLED, REQUESTED, REQUESTED) is S.FILLED
    assert target_state(S.PENDING_CANCEL, V.PENDING_CANCEL, REQUESTED, REQUESTED) is S.FILLED


def test_target_state_refuses_a_negative_filled_quantity() -> None:
    with pytest.raises(ValueError, match="filled_qty"):
        target_state(S.OPEN, V.NEW, Decimal(-1), REQUESTED)


# --- apply -------------------------------------------------------------------------------------


def test_ack_opens_the_order_and_attaches_the_venue_id() -> None:
    order = apply(make_order(), ack())
    assert order.state is S.OPEN
    assert order.venue_order_id == "42"
    assert order.acked_at == T0 + timedelta(milliseconds=5)
    assert order.venue_ts == T0


def test_ack_with_fills_chooses_the_state_but_fills_come_from_fill_events() -> None:
    order = apply(make_order(), ack(V.PARTIALLY_FILLED, Decimal(4)))
    assert order.state is S.PARTIALLY_FILLED
    assert order.filled_qty == 0


def test_apply_returns_a_new_order_and_leaves_the_old_one_alone() -> None:
    before = make_order()
    after = apply(before, ack())
    assert before.state is S.PENDING_SUBMIT
    assert after is not before


def test_ack_with_a_second_venue_order_id_is_refused_as_a_possible_duplicate() -> None:
    order = apply(make_order(), ack(voi="42"))
    with pytest.raises(IllegalTransition, match="duplicate"):
        apply(order, ack(voi="43"))


def test_ack_after_a_stream_report_filled_the_order_keeps_it_filled() -> None:
    order = make_order(S.FILLED, filled_qty=REQUESTED, avg_price=Decimal(100))
    order = apply(order, ack(V.NEW))
    assert order.state is S.FILLED
    assert order.venue_order_id == "42"


def test_ack_on_a_rejected_order_is_a_contradiction() -> None:
    with pytest.raises(IllegalTransition, match="refusal"):
        apply(make_order(S.REJECTED), ack())


def test_ambiguous_submit_makes_the_order_unknown_with_the_error() -> None:
    order = apply(make_order(), SubmitAmbiguous(error="read timeout", at=T0))
    assert order.state is S.UNKNOWN
    assert order.last_error == "read timeout"


def test_ambiguous_answer_after_a_stream_ack_keeps_the_better_knowledge() -> None:
    order = apply(apply(make_order(), ack()), SubmitAmbiguous(error="read timeout", at=T0))
    assert order.state is S.OPEN


def test_refused_submit_is_rejected() -> None:
    order = apply(make_order(), SubmitRefused(reason="-1013 Filter failure: LOT_SIZE", at=T0))
    assert order.state is S.REJECTED
    assert order.last_error == "-1013 Filter failure: LOT_SIZE"


def test_refusal_cannot_resolve_an_unknown_order() -> None:
    with pytest.raises(IllegalTransition):
        apply(make_order(S.UNKNOWN), SubmitRefused(reason="x", at=T0))


def test_partial_then_complete_fill_with_weighted_average_price() -> None:
    order = apply(make_order(), ack())
    order = apply(order, FillApplied(qty=Decimal(4), price=Decimal(100)))
    assert (order.state, order.filled_qty, order.avg_price) == (
        S.PARTIALLY_FILLED,
        Decimal(4),
        Decimal(100),
    )
    order = apply(order, FillApplied(qty=Decimal(6), price=Decimal(105)))
    assert order.state is S.FILLED
    assert order.filled_qty == REQUESTED
    assert order.avg_price == Decimal(103)
    assert order.remaining_qty == 0


def test_a_fill_before_the_ack_resolves_an_unknown_order() -> None:
    order = apply(make_order(S.UNKNOWN), FillApplied(qty=Decimal(1), price=Decimal(100)))
    assert order.state is S.PARTIALLY_FILLED


def test_a_late_fill_on_a_canceled_order_is_kept_and_the_state_stays() -> None:
    order = make_order(S.CANCELED)
    order = apply(order, FillApplied(qty=Decimal(2), price=Decimal(99)))
    assert order.state is S.CANCELED
    assert order.filled_qty == 2


def test_a_partial_fill_while_canceling_keeps_the_cancel_pending() -> None:
    order = apply(make_order(S.PENDING_CANCEL), FillApplied(qty=Decimal(2), price=Decimal(99)))
    assert order.state is S.PENDING_CANCEL


def test_an_overfill_is_refused() -> None:
    order = make_order(S.PARTIALLY_FILLED, filled_qty=Decimal(9), avg_price=Decimal(100))
    with pytest.raises(IllegalTransition, match="overfill"):
        apply(order, FillApplied(qty=Decimal(2), price=Decimal(100)))


def test_a_fill_on_a_rejected_order_is_refused() -> None:
    with pytest.raises(IllegalTransition):
        apply(make_order(S.REJECTED), FillApplied(qty=Decimal(1), price=Decimal(1)))


def test_a_stale_status_report_is_ignored_not_raised() -> None:
    order = make_order(S.PARTIALLY_FILLED, filled_qty=Decimal(3), avg_price=Decimal(100))
    assert apply(order, seen(V.NEW)).state is S.PARTIALLY_FILLED


def test_status_report_keeps_the_latest_venue_time() -> None:
    order = make_order(S.OPEN, venue_ts=T0 + timedelta(seconds=1))
    order = apply(order, seen(V.PARTIALLY_FILLED, Decimal(1)))
    assert order.venue_ts == T0 + timedelta(seconds=1)


def test_cancel_request_then_refusal_returns_to_open() -> None:
    order = apply(apply(make_order(), ack()), CancelRequested(at=T0))
    assert order.state is S.PENDING_CANCEL
    assert apply(order, seen(V.NEW)).state is S.OPEN


def test_cancel_of_a_filled_order_is_refused() -> None:
    with pytest.raises(IllegalTransition, match="nothing left to cancel"):
        apply(make_order(S.FILLED, filled_qty=REQUESTED), CancelRequested(at=T0))


def test_resubmission_only_follows_an_ambiguous_submit() -> None:
    assert apply(make_order(S.UNKNOWN), ResubmitScheduled(at=T0)).state is S.PENDING_SUBMIT
    with pytest.raises(IllegalTransition):
        apply(make_order(S.OPEN), ResubmitScheduled(at=T0))


def test_an_unknown_order_expires_only_after_a_lookup_found_nothing() -> None:
    with pytest.raises(IllegalTransition, match="lookup"):
        apply(make_order(S.UNKNOWN), IntentExpired(reason="ttl", at=T0))
    order = apply(
        make_order(S.UNKNOWN), IntentExpired(reason="ttl", at=T0, not_found_on_venue=True)
    )
    assert order.state is S.EXPIRED
    assert order.last_error == "ttl"


def test_a_pending_submit_expires_when_the_final_gate_fails() -> None:
    order = apply(make_order(), IntentExpired(reason="stale market data", at=T0))
    assert order.state is S.EXPIRED


def test_an_acknowledged_order_is_not_expired_by_us() -> None:
    with pytest.raises(IllegalTransition, match="venue decides"):
        apply(make_order(S.OPEN), IntentExpired(reason="ttl", at=T0, not_found_on_venue=True))


def test_events_refuse_naive_timestamps() -> None:
    with pytest.raises(ValueError, match="aware"):
        SubmitAmbiguous(error="x", at=datetime(2026, 1, 1))


def test_fill_events_refuse_non_positive_quantities() -> None:
    with pytest.raises(ValueError, match="qty"):
        FillApplied(qty=Decimal(0), price=Decimal(1))


# --- properties --------------------------------------------------------------------------------

fill_qty = st.sampled_from([Decimal("0.5"), Decimal(1), Decimal(2), Decimal(3), Decimal(7)])
venue_status = st.sampled_from(list(VenueOrderStatus))
cumulative = st.sampled_from([Decimal(0), Decimal(1), Decimal(5), REQUESTED])

events: st.SearchStrategy[OrderEvent] = st.one_of(
    st.builds(ack, venue_status, cumulative, st.sampled_from(["42", "43"])),
    st.builds(SubmitAmbiguous, error=st.just("timeout"), at=st.just(T0)),
    st.builds(SubmitRefused, reason=st.just("filter"), at=st.just(T0)),
    st.builds(FillApplied, qty=fill_qty, price=st.sampled_from([Decimal(99), Decimal(101)])),
    st.builds(seen, venue_status, cumulative),
    st.builds(CancelRequested, at=st.just(T0)),
    st.builds(ResubmitScheduled, at=st.just(T0)),
    st.builds(
        IntentExpired, reason=st.just("ttl"), at=st.just(T0), not_found_on_venue=st.booleans()
    ),
)


#: events that carry evidence from the venue: the only ones that may resolve an ambiguity
def is_venue_evidence(event: OrderEvent) -> bool:
    if isinstance(event, IntentExpired):
        return event.not_found_on_venue
    return isinstance(
        event, SubmitAcknowledged | VenueStatusObserved | FillApplied | ResubmitScheduled
    )


def run(order: Order, sequence: list[OrderEvent]) -> list[tuple[Order, OrderEvent, Order]]:
    """Apply each event, skipping the ones refused; return the accepted steps."""
    steps = []
    for event in sequence:
        try:
            after = apply(order, event)
        except IllegalTransition:
            continue
        steps.append((order, event, after))
        order = after
    return steps


start_states = st.sampled_from([S.PENDING_SUBMIT, S.UNKNOWN])


@settings(max_examples=300)
@given(start=start_states, sequence=st.lists(events, max_size=25))
def test_random_event_sequences_keep_the_invariants(
    start: OrderState, sequence: list[OrderEvent]
) -> None:
    order = make_order(start)
    applied_fills = Decimal(0)
    for before, event, after in run(order, sequence):
        # table and apply agree: every state change apply makes is in the table
        assert after.state is before.state or can_transition(before.state, after.state)
        # a terminal state is never left
        if before.state.is_terminal:
            assert after.state is before.state
        # UNKNOWN only becomes terminal on venue evidence
        if before.state is S.UNKNOWN and after.state.is_terminal:
            assert is_venue_evidence(event)
        if isinstance(event, FillApplied):
            applied_fills += event.qty
        assert after.filled_qty == applied_fills
        assert after.filled_qty <= after.requested_qty


non_evidence_events = st.one_of(
    st.builds(SubmitAmbiguous, error=st.just("timeout"), at=st.just(T0)),
    st.builds(SubmitRefused, reason=st.just("filter"), at=st.just(T0)),
    st.builds(CancelRequested, at=st.just(T0)),
    st.builds(IntentExpired, reason=st.just("ttl"), at=st.just(T0)),
)


@given(sequence=st.lists(non_evidence_events, max_size=20))
def test_an_unknown_order_never_becomes_terminal_without_venue_evidence(
    sequence: list[OrderEvent],
) -> None:
    steps = run(make_order(S.UNKNOWN), sequence)
    assert all(not after.state.is_terminal for _, _, after in steps)


def _candidate_events() -> list[OrderEvent]:
    out: list[OrderEvent] = [
        SubmitAmbiguous(error="t", at=T0),
        SubmitRefused(reason="r", at=T0),
        CancelRequested(at=T0),
        ResubmitScheduled(at=T0),
        IntentExpired(reason="ttl", at=T0),
        IntentExpired(reason="ttl", at=T0, not_found_on_venue=True),
        FillApplied(qty=Decimal(1), price=Decimal(100)),
        FillApplied(qty=REQUESTED, price=Decimal(100)),
    ]
    for status in VenueOrderStatus:
        for filled in (Decimal(0), Decimal(1), REQUESTED):
            out.append(ack(status, filled))
            out.append(seen(status, filled))
    return out


def _orders_in(state: OrderState) -> list[Order]:
    # a state reached with and without fills, where both are possible
    partial = {"filled_qty": Decimal(3), "avg_price": Decimal(100)}
    if state is S.PARTIALLY_FILLED:
        return [make_order(state, **partial)]
    return [make_order(state), make_order(state, **partial)]


@pytest.mark.parametrize(
    ("a", "b"), [(a, b) for a, targets in TRANSITIONS.items() for b in sorted(targets)]
)
def test_every_edge_of_the_table_is_reachable_by_some_event(a: OrderState, b: OrderState) -> None:
    reached = set()
    for order in _orders_in(a):
        for event in _candidate_events():
            with contextlib.suppress(IllegalTransition):
                reached.add(apply(order, event).state)
    assert b in reached


def test_order_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        make_order().state = S.OPEN  # type: ignore[misc]
