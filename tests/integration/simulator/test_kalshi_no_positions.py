"""NO positions on the Kalshi simulator: selling YES the account does not hold buys NO (its NO
price paid from cash), the position goes negative, the settlement pays NO contracts on ``no``,
and the adapter reports cash the way our ledger books it (a YES sold at its YES price), so the
balance check agrees before and after the settlement."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.domain.types import OrderType, Side, TimeInForce
from engine.exceptions import Definitive
from engine.venues.base import OrderRequest
from engine.venues.kalshi_simulator import KalshiSimConfig, run_kalshi_simulator
from tests.contract.test_kalshi_simulator_contract import MARKET, adapter_for
from tests.contract.venue_contract import new_client_order_id

D = Decimal
#: 10 YES sold at 0.45: taker fee ceil(0.07 * 10 * 0.45 * 0.55) to the cent
FEE = D("0.18")


def sell_yes(quantity: str, price: str = "0.45") -> OrderRequest:
    return OrderRequest(
        client_order_id=new_client_order_id("no"),
        symbol=MARKET,
        side=Side.SELL,
        type=OrderType.LIMIT,
        quantity=D(quantity),
        limit_price=D(price),
        time_in_force=TimeInForce.IOC,
    )


@pytest.mark.parametrize(
    ("result", "venue_cash_after"),
    # NO pays $1 per contract on "no": 10000 - 5.50 NO price - fee + 10
    [("no", D(10000) - D("5.50") - FEE + 10), ("yes", D(10000) - D("5.50") - FEE)],
)
async def test_selling_yes_not_held_opens_a_no_position_that_settles_as_no(
    result: str, venue_cash_after: Decimal
) -> None:
    config = KalshiSimConfig(contracts=D(0), read_lag_s=0)
    async with run_kalshi_simulator(config) as sim:
        venue = adapter_for(sim)
        try:
            report = await venue.submit(sell_yes("10"))
            assert report.filled_quantity == 10
            assert sim.state.position(MARKET) == -10
            # Kalshi took the NO price, 0.55 a contract, and the fee
            assert sim.state.cash_available() == D(10000) - D("5.50") - FEE
            # the adapter: USD as the ledger books a YES sold (0.45 received), contracts -10
            balances = {b.asset: b.total for b in await venue.balances()}
            assert balances["USD"] == D(10000) + D("4.50") - FEE
            assert balances[MARKET] == -10

            row = sim.state.settle_market(MARKET, result)
            assert (row["yes_count_fp"], row["no_count_fp"]) == ("0.00", "10.00")
            assert row["revenue"] == (1000 if result == "no" else 0)
            assert sim.state.cash_available() == venue_cash_after
            balances = {b.asset: b.total for b in await venue.balances()}
            # what the ledger expects: 4.50 received - fee, then -10 x the YES payout
            payout = 1 if result == "yes" else 0
            assert balances["USD"] == D(10000) + D("4.50") - FEE - 10 * payout == venue_cash_after
            assert balances[MARKET] == 0
        finally:
            await venue.close()


async def test_a_no_position_the_cash_cannot_pay_for_is_refused() -> None:
    config = KalshiSimConfig(contracts=D(0), cash=D(5), read_lag_s=0)
    async with run_kalshi_simulator(config) as sim:
        venue = adapter_for(sim)
        try:
            with pytest.raises(Definitive):
                await venue.submit(sell_yes("10"))  # 5.50 of NO price, 5 of cash
            report = await venue.submit(sell_yes("5"))  # 2.75: paid
            assert report.filled_quantity == 5
            assert sim.state.position(MARKET) == -5
        finally:
            await venue.close()


async def test_selling_yes_held_closes_it_before_opening_no() -> None:
    config = KalshiSimConfig(contracts=D(4), read_lag_s=0)
    async with run_kalshi_simulator(config) as sim:
        venue = adapter_for(sim)
        try:
            await venue.submit(sell_yes("10"))
            assert sim.state.position(MARKET) == -6
            # 4 YES sold at 0.45, 6 NO bought at 0.55
            expected = D(10000) + 4 * D("0.45") - 6 * D("0.55") - FEE
            assert sim.state.cash_available() == expected
        finally:
            await venue.close()
