"""The chaos checker itself: each invariant catches the breach it names (hand-built worlds)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from engine.domain.types import OrderState, VenueOrderStatus
from tests.chaos.invariants import (
    Incident,
    LedgerOrder,
    Settlement,
    Trade,
    VenueOrder,
    World,
    check,
    converged,
)

D = Decimal


def trade(trade_id: str = "1", *, qty: str = "0.001", coid: str | None = "tctl-a") -> Trade:
    return Trade(
        symbol="BTCUSDT",
        trade_id=trade_id,
        side="BUY",
        qty=D(qty),
        price=D("30000"),
        fee=D("0.03"),
        client_order_id=coid,
        venue_order_id="7",
    )


def world(**changes: object) -> World:
    base = World(
        prefix="tctl",
        venue_orders=[
            VenueOrder(
                order_id=7,
                client_order_id="tctl-a",
                symbol="BTCUSDT",
                status=VenueOrderStatus.FILLED,
                executed_qty=D("0.001"),
            )
        ],
        venue_trades=[trade()],
        base_assets={"BTCUSDT": "BTC"},
        base_change={"BTC": D("0.001"), "USDT": D("-30.03")},
        ledger_orders=[
            LedgerOrder(
                client_order_id="tctl-a",
                symbol="BTCUSDT",
                state=OrderState.FILLED,
                venue_order_id="7",
            )
        ],
        ledger_fills=[trade()],
        ledger_positions={"BTCUSDT": D("0.001")},
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_a_ledger_that_matches_the_venue_has_no_violation() -> None:
    assert check(world()) == []
    assert converged(world()) == []


def test_two_venue_orders_for_one_client_order_id_are_a_duplicate() -> None:
    twice = world().venue_orders[0]
    again = dataclasses.replace(twice, order_id=9)
    assert any(v.startswith("duplicate:") for v in check(world(venue_orders=[twice, again])))


def test_a_venue_order_with_our_prefix_missing_from_the_ledger_is_reported() -> None:
    assert any(v.startswith("unknown:") for v in check(world(ledger_orders=[])))


def test_a_venue_fill_missing_from_the_ledger_is_a_lost_fill() -> None:
    violations = check(world(ledger_fills=[], ledger_positions={}))
    assert any(v.startswith("lost fill:") for v in violations)
    assert any(v.startswith("position BTCUSDT:") for v in violations)


def test_a_fill_recorded_with_another_quantity_is_a_mismatch() -> None:
    violations = check(world(ledger_fills=[trade(qty="0.002")]))
    assert any(v.startswith("fill mismatch:") and "qty" in v for v in violations)


def test_a_fill_recorded_without_its_client_order_id_is_not_attached() -> None:
    assert any(
        v.startswith("fill not attached:") for v in check(world(ledger_fills=[trade(coid=None)]))
    )


def test_the_base_balance_must_move_by_the_sum_of_fills() -> None:
    violations = check(world(base_change={"BTC": D("0.002")}))
    assert any(v.startswith("position BTCUSDT:") for v in violations)


def test_an_open_ledger_order_the_venue_filled_is_stale() -> None:
    order = dataclasses.replace(world().ledger_orders[0], state=OrderState.OPEN)
    assert any(v.startswith("stale:") for v in converged(world(ledger_orders=[order])))


def test_an_unresolved_ledger_order_is_reported() -> None:
    order = dataclasses.replace(world().ledger_orders[0], state=OrderState.UNKNOWN)
    assert any(v.startswith("unresolved:") for v in converged(world(ledger_orders=[order])))


def test_a_ledger_order_the_venue_never_had_must_be_rejected_or_expired() -> None:
    ghost = LedgerOrder(
        client_order_id="tctl-b", symbol="BTCUSDT", state=OrderState.OPEN, venue_order_id=None
    )
    expired = dataclasses.replace(ghost, client_order_id="tctl-c", state=OrderState.EXPIRED)
    orders = [*world().ledger_orders, ghost, expired]
    violations = check(world(ledger_orders=orders))
    assert [v for v in violations if v.startswith("never placed:")] == [
        "never placed: tctl-b is OPEN, the venue never had it"
    ]


def drift_incident(asset: str = "BTC") -> Incident:
    return Incident(
        id=1,
        kind="balance_drift",
        message="strategy churn-btc paused: venue balance BTC differs from ledger by 0.001",
        details={"asset": asset, "difference": "0.001"},
    )


def test_a_balance_drift_with_no_external_change_behind_it_is_unjustified() -> None:
    [violation] = check(world(open_incidents=[drift_incident()]))
    assert "unjustified incident 1 (balance_drift)" in violation


def test_a_balance_drift_behind_a_deposit_is_justified() -> None:
    deposit = world(open_incidents=[drift_incident()], external_changes={"BTC": D("0.5")})
    assert check(deposit) == []


def test_an_unknown_order_incident_is_justified_only_while_the_ledger_lacks_the_order() -> None:
    incident = Incident(
        id=2,
        kind="unknown_venue_order",
        message="symbol BTCUSDT paused",
        details={"client_order_id": "tctl-a"},
    )
    assert check(world(open_incidents=[incident])) != []  # the ledger knows tctl-a
    unknown = dataclasses.replace(incident, details={"client_order_id": "tctl-zz"})
    venue = [*world().venue_orders, dataclasses.replace(world().venue_orders[0], order_id=8)]
    venue[1] = dataclasses.replace(venue[1], client_order_id="tctl-zz")
    violations = check(world(open_incidents=[unknown], venue_orders=venue))
    assert not [v for v in violations if v.startswith("unjustified")], violations


def test_a_fills_missing_incident_is_unjustified_once_the_fills_are_in() -> None:
    incident = Incident(
        id=3, kind="fills_missing", message="order tctl-a", details={"client_order_id": "tctl-a"}
    )
    [violation] = check(world(open_incidents=[incident]))
    assert "unjustified incident 3 (fills_missing)" in violation


def test_an_external_trade_incident_needs_a_venue_trade_tradectl_did_not_place() -> None:
    incident = Incident(
        id=4, kind="external_trade", message="1 trade(s) on BTCUSDT", details={"symbol": "BTCUSDT"}
    )
    [violation] = check(world(open_incidents=[incident]))
    assert "unjustified incident 4 (external_trade)" in violation
    manual = trade("9", coid="web-1")
    justified = world(open_incidents=[incident], venue_trades=[trade(), manual])
    assert not [v for v in check(justified) if v.startswith("unjustified")]


def settled_world(**changes: object) -> World:
    """A Kalshi account that held 100 YES of KX-A, bought 10 more at 0.40 (fee 0.03) and saw
    the market settle YES: 110 contracts pay 110.00."""
    fill = Trade(
        symbol="KX-A",
        trade_id="f-1",
        side="BUY",
        qty=D(10),
        price=D("0.40"),
        fee=D("0.03"),
        client_order_id="tctl-k",
        venue_order_id="uuid-1",
    )
    base = World(
        prefix="tctl",
        venue_orders=[
            VenueOrder(
                order_id="uuid-1",
                client_order_id="tctl-k",
                symbol="KX-A",
                status=VenueOrderStatus.FILLED,
                executed_qty=D(10),
            )
        ],
        venue_trades=[fill],
        base_assets={"KX-A": "KX-A"},
        base_change={"KX-A": D(10)},
        ledger_orders=[
            LedgerOrder(
                client_order_id="tctl-k",
                symbol="KX-A",
                state=OrderState.FILLED,
                venue_order_id="uuid-1",
            )
        ],
        ledger_fills=[fill],
        ledger_positions={"KX-A": D(10)},
        settles=True,
        venue_settlements=[Settlement(symbol="KX-A", result="yes", payout=D(1), count=D(110))],
        ledger_settlements=[Settlement(symbol="KX-A", result="yes", payout=D("1.0000"))],
        initial_holdings={"KX-A": D(100)},
        quote_asset="USD",
        quote_change=D("-4.03") + D(110),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_a_ledger_settled_like_the_venue_has_no_violation() -> None:
    assert check(settled_world()) == []
    assert converged(settled_world()) == []


def test_a_venue_settlement_the_ledger_has_not_recorded_is_missing_until_converged() -> None:
    violations = converged(settled_world(ledger_settlements=[]))
    assert any(v.startswith("settlement missing: the venue settled KX-A") for v in violations)


def test_a_settlement_recorded_with_another_result_is_reported() -> None:
    wrong = [Settlement(symbol="KX-A", result="no", payout=D(0))]
    violations = check(settled_world(ledger_settlements=wrong))
    assert any(v.startswith("settlement KX-A:") for v in violations)


def test_a_settled_position_the_venue_counted_differently_is_reported() -> None:
    venue = [Settlement(symbol="KX-A", result="yes", payout=D(1), count=D(105))]
    violations = check(settled_world(venue_settlements=venue))
    assert any(v.startswith("settled position KX-A:") for v in violations)


def test_cash_must_move_by_the_fills_and_the_payout() -> None:
    violations = check(settled_world(quote_change=D("-4.03")))  # the payout never arrived
    assert any(v.startswith("balance USD:") for v in violations)
