"""When a saved demo exchange may continue a ledger account (engine/demo.py): it must hold
everything the ledger knows came from the venue, and nothing of ours the ledger does not know."""

from __future__ import annotations

from decimal import Decimal

from engine.demo import LedgerOrder, behind_the_ledger
from engine.domain.types import OrderState, OrderType, Side, TimeInForce
from engine.venues.simulator import ManualClock, SimulatorConfig, SimulatorState
from engine.venues.simulator.records import NewOrder


def exchange_with(*orders: tuple[str, Decimal]) -> SimulatorState:
    """A venue where each ``(client order id, limit price)`` buys 0.001 BTC (the touch: ~30000)."""
    state = SimulatorState(SimulatorConfig(seed=1, market_interval=None), clock=ManualClock())
    for coid, price in orders:
        state.place_order(
            NewOrder(
                symbol="BTCUSDT",
                side=Side.BUY,
                type=OrderType.LIMIT,
                quantity=Decimal("0.001"),
                client_order_id=coid,
                price=price,
                time_in_force=TimeInForce.GTC,
            )
        )
    return state


def test_a_venue_holding_everything_the_ledger_knows_may_continue() -> None:
    state = exchange_with(("tctl-a", Decimal("30100")), ("tctl-b", Decimal("29000")))
    [trade] = state.trades()
    orders = [
        LedgerOrder("tctl-a", OrderState.FILLED, "1"),
        LedgerOrder("tctl-b", OrderState.OPEN, "2"),
        # reserved, never acknowledged: the engine looks it up and resends or expires it
        LedgerOrder("tctl-c", OrderState.PENDING_SUBMIT, None),
    ]
    fills = [("BTCUSDT", str(trade.trade_id))]
    assert behind_the_ledger(state, orders, fills, prefix="tctl") == []
    # ahead of the ledger (a fill not recorded yet) is fine too: the reconciler fetches it
    assert behind_the_ledger(state, orders, [], prefix="tctl") == []


def test_a_venue_behind_the_ledger_or_holding_unknown_orders_may_not() -> None:
    state = exchange_with(("tctl-b", Decimal("29000")), ("tctl-x", Decimal("29000")))
    orders = [
        LedgerOrder("tctl-a", OrderState.FILLED, "7"),  # acknowledged, missing on the venue
        LedgerOrder("tctl-b", OrderState.CANCELED, "1"),  # closed in the ledger, open there
    ]
    reasons = behind_the_ledger(state, orders, [("BTCUSDT", "99")], prefix="tctl")
    assert reasons == [
        "1 fill(s) in the ledger are not in the saved exchange",
        "1 acknowledged order(s) in the ledger are not in it",
        "1 order(s) the ledger closed are still open in it",
        "it holds 1 order(s) the ledger does not know (another or a wiped ledger?)",
    ]
