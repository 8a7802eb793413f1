from decimal import Decimal

from engine.domain.risk import Exposure, Limits
from engine.domain.risk.limits import Check
from engine.domain.risk.utilisation import utilisation
from engine.domain.types import StrategyId, Symbol

A, B = StrategyId("a"), StrategyId("b")
BTC, ETH = Symbol("BTCUSDT"), Symbol("ETHUSDT")


def test_position_limits_use_the_worst_case_with_resting_orders_and_the_mark() -> None:
    own = {A: Limits(max_position_qty=Decimal(2), max_position_notional=Decimal(1000))}
    used = utilisation(
        {(A, BTC): Exposure(position=Decimal("0.5"), open_buy_qty=Decimal("0.5"))},
        {BTC: Decimal(100)},
        lambda s: own.get(s, Limits()),
        Limits(),
    )
    assert [(u.check, u.used, u.fraction) for u in used] == [
        (Check.POSITION_QTY, Decimal(1), Decimal("0.5")),
        (Check.POSITION_NOTIONAL, Decimal(100), Decimal("0.1")),
    ]


def test_account_exposure_sums_every_strategy_per_symbol_and_skips_unmarked_notional() -> None:
    used = utilisation(
        {
            (A, BTC): Exposure(position=Decimal(1)),
            (B, BTC): Exposure(position=Decimal(-3)),
            (B, ETH): Exposure(position=Decimal(2)),
        },
        {BTC: Decimal(10)},  # no ETH mark: its notional cannot be valued
        lambda s: Limits(max_position_notional=Decimal(100)),
        Limits(max_account_exposure=Decimal(40), max_daily_loss=Decimal(50)),
        pnl_today=Decimal(-5),
    )
    account = {u.check: u for u in used if u.strategy_id is None}
    assert account[Check.ACCOUNT_EXPOSURE].used == Decimal(20)  # |1 - 3| * 10
    assert account[Check.ACCOUNT_EXPOSURE].fraction == Decimal("0.5")
    assert account[Check.DAILY_LOSS].used == Decimal(5)
    notional = [u for u in used if u.check is Check.POSITION_NOTIONAL]
    assert [(u.strategy_id, u.symbol) for u in notional] == [(A, BTC), (B, BTC)]


def test_a_zero_limit_has_no_fraction() -> None:
    [u] = utilisation(
        {(A, BTC): Exposure(position=Decimal(1))},
        {},
        lambda s: Limits(max_position_qty=Decimal(0)),
        Limits(),
    )
    assert u.fraction is None


def test_account_limits_per_symbol_category_and_equity_count_every_strategy_together() -> None:
    sol = Symbol("SOLUSDT")
    limits = Limits(
        max_symbol_position={BTC: Decimal(4)},
        max_symbol_notional={ETH: Decimal(100)},
        categories={BTC: "l1", ETH: "l1", sol: "l1"},
        max_category_gross={"l1": Decimal(200)},
        max_category_net={"l1": Decimal(100)},
        max_position_equity_pct=Decimal(10),
        equity_asset="USDT",
    )
    used = utilisation(
        {
            (A, BTC): Exposure(position=Decimal(1)),
            (B, BTC): Exposure(position=Decimal(1), open_buy_qty=Decimal(1)),
            (B, ETH): Exposure(position=Decimal(-2)),
        },
        {BTC: Decimal(10), ETH: Decimal(20)},
        lambda s: Limits(),
        limits,
        cash=Decimal(960),  # equity: 960 + 2 * 10 - 2 * 20 = 940
    )
    account = {(u.check, u.symbol, u.category): u.used for u in used if u.strategy_id is None}
    assert account[(Check.SYMBOL_QTY, BTC, None)] == 3  # 1 + 1 held, 1 resting
    assert account[(Check.SYMBOL_NOTIONAL, ETH, None)] == 40
    assert account[(Check.CATEGORY_GROSS, None, "l1")] == 70  # 3 * 10 + 2 * 20
    # net: the worst-case long side (30 - 40 = -10) or short side (-20 + 40 = 20)
    assert account[(Check.CATEGORY_NET, None, "l1")] == 20
    assert account[(Check.POSITION_EQUITY, BTC, None)] == Decimal(30) / 940 * 100
    assert account[(Check.POSITION_EQUITY, ETH, None)] == Decimal(40) / 940 * 100


def test_the_equity_limit_is_left_out_while_the_cash_is_unknown() -> None:
    limits = Limits(max_position_equity_pct=Decimal(10), equity_asset="USDT")
    used = utilisation(
        {(A, BTC): Exposure(position=Decimal(1))}, {BTC: Decimal(10)}, lambda s: Limits(), limits
    )
    assert [u for u in used if u.check is Check.POSITION_EQUITY] == []
