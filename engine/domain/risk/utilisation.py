"""How much of each configured position limit the exposure uses: the portfolio summary of
`tradectl status`.

Exposure is the worst case the checks use (the position plus the resting orders on either
side, :meth:`Exposure.gross`), valued at the mark for the notional limits, so 100 % here is
where the next order growing the exposure gets rejected or resized.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from engine.domain.risk.limits import Check, Limits
from engine.domain.risk.views import ZERO, Exposure
from engine.domain.types import Side, StrategyId, Symbol


@dataclass(frozen=True, slots=True, kw_only=True)
class Utilisation:
    #: ``None`` for an account-wide limit
    strategy_id: StrategyId | None
    symbol: Symbol | None
    check: Check
    used: Decimal
    limit: Decimal
    #: the category of a category limit
    category: str | None = None

    @property
    def fraction(self) -> Decimal | None:
        """``used / limit``; ``None`` for a zero limit (nothing may be held)."""
        return self.used / self.limit if self.limit > 0 else None


def utilisation(
    exposures: Mapping[tuple[StrategyId, Symbol], Exposure],
    marks: Mapping[Symbol, Decimal],
    limits_for: Callable[[StrategyId], Limits],
    account_limits: Limits,
    *,
    pnl_today: Decimal | None = None,
    cash: Decimal | None = None,
) -> list[Utilisation]:
    """Per strategy and symbol the position limits (quantity, notional at the mark); the
    account's gross exposure limit; and, given today's P&L of the account, the daily loss
    limits (the account's, and a strategy's own where it sets another: the check compares the
    account's loss with the limit of the strategy deciding). A notional limit of a symbol
    without a mark is left out (nothing to value it at)."""
    out: list[Utilisation] = []
    per_symbol: dict[Symbol, Exposure] = {}
    for (strategy, symbol), exposure in sorted(exposures.items()):
        total = per_symbol.get(symbol, Exposure())
        per_symbol[symbol] = Exposure(
            position=total.position + exposure.position,
            open_buy_qty=total.open_buy_qty + exposure.open_buy_qty,
            open_sell_qty=total.open_sell_qty + exposure.open_sell_qty,
        )
        limits = limits_for(strategy)
        gross = exposure.gross()
        qty_limit = limits.position_qty_limit(symbol)
        if qty_limit is not None:
            out.append(
                Utilisation(
                    strategy_id=strategy,
                    symbol=symbol,
                    check=Check.POSITION_QTY,
                    used=gross,
                    limit=qty_limit,
                )
            )
        notional_limit = limits.position_notional_limit(symbol)
        mark = marks.get(symbol)
        if notional_limit is not None and mark is not None:
            out.append(
                Utilisation(
                    strategy_id=strategy,
                    symbol=symbol,
                    check=Check.POSITION_NOTIONAL,
                    used=gross * mark,
                    limit=notional_limit,
                )
            )
    if pnl_today is not None:
        loss = max(ZERO, -pnl_today)
        if account_limits.max_daily_loss is not None:
            out.append(
                Utilisation(
                    strategy_id=None,
                    symbol=None,
                    check=Check.DAILY_LOSS,
                    used=loss,
                    limit=account_limits.max_daily_loss,
                )
            )
        for strategy in sorted({s for s, _ in exposures}):
            own = limits_for(strategy).max_daily_loss
            if own is not None and own != account_limits.max_daily_loss:
                out.append(
                    Utilisation(
                        strategy_id=strategy, symbol=None, check=Check.DAILY_LOSS, used=loss,
                        limit=own,
                    )
                )  # fmt: skip
    out.extend(account_utilisation(per_symbol, marks, account_limits, cash=cash))
    limit = account_limits.max_account_exposure
    if limit is not None:
        used = sum(
            (e.gross() * marks[s] for s, e in per_symbol.items() if s in marks and e.gross()),
            ZERO,
        )
        out.append(
            Utilisation(
                strategy_id=None, symbol=None, check=Check.ACCOUNT_EXPOSURE, used=used, limit=limit
            )
        )
    return out


def account_utilisation(
    per_symbol: Mapping[Symbol, Exposure],
    marks: Mapping[Symbol, Decimal],
    limits: Limits,
    *,
    cash: Decimal | None = None,
) -> list[Utilisation]:
    """The account-level limits over every strategy together, as the checks value them:
    per symbol its position and notional limit; per category the gross (magnitudes) and net
    (the larger of the worst-case long and short sums) notional; and per symbol its notional
    as a percentage of the equity (``cash`` in the equity asset plus the positions at their
    marks; left out while the cash or a position's mark is unknown). The ``used`` of the equity
    limit is the percentage, as in the check's verdict."""
    out: list[Utilisation] = []
    for symbol, exposure in sorted(per_symbol.items()):
        gross, mark = exposure.gross(), marks.get(symbol)
        qty_limit = limits.max_symbol_position.get(symbol)
        if qty_limit is not None:
            out.append(_account(Check.SYMBOL_QTY, gross, qty_limit, symbol=symbol))
        notional_limit = limits.max_symbol_notional.get(symbol)
        if notional_limit is not None and mark is not None:
            out.append(_account(Check.SYMBOL_NOTIONAL, gross * mark, notional_limit, symbol=symbol))
    categories = sorted(set(limits.max_category_gross) | set(limits.max_category_net))
    for category in categories:
        gross_sum = long_sum = short_sum = ZERO
        for symbol, exposure in per_symbol.items():
            mark = marks.get(symbol)
            if limits.categories.get(symbol) != category or mark is None:
                continue
            gross_sum += exposure.gross() * mark
            long_sum += exposure.worst_case(Side.BUY) * mark
            short_sum += exposure.worst_case(Side.SELL) * mark
        if (gross_limit := limits.max_category_gross.get(category)) is not None:
            out.append(_account(Check.CATEGORY_GROSS, gross_sum, gross_limit, category=category))
        if (net_limit := limits.max_category_net.get(category)) is not None:
            net = max(long_sum, short_sum, ZERO)
            out.append(_account(Check.CATEGORY_NET, net, net_limit, category=category))
    pct = limits.max_position_equity_pct
    equity = _equity(per_symbol, marks, cash) if pct is not None else None
    if pct is not None and equity is not None and equity > 0:
        for symbol, exposure in sorted(per_symbol.items()):
            mark = marks.get(symbol)
            if mark is not None and exposure.gross():
                share = exposure.gross() * mark / equity * 100
                out.append(_account(Check.POSITION_EQUITY, share, pct, symbol=symbol))
    return out


def _equity(
    per_symbol: Mapping[Symbol, Exposure], marks: Mapping[Symbol, Decimal], cash: Decimal | None
) -> Decimal | None:
    if cash is None:
        return None
    equity = cash
    for symbol, exposure in per_symbol.items():
        if exposure.position == 0:
            continue
        mark = marks.get(symbol)
        if mark is None:
            return None
        equity += exposure.position * mark
    return equity


def _account(
    check: Check,
    used: Decimal,
    limit: Decimal,
    *,
    symbol: Symbol | None = None,
    category: str | None = None,
) -> Utilisation:
    return Utilisation(
        strategy_id=None, symbol=symbol, check=check, used=used, limit=limit, category=category
    )
