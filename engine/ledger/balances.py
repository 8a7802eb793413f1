"""Balances as the venue reports them, instruments, and the baselines that balance
reconciliation compares the venue's totals against."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from engine.domain.types import Asset, StrategyId, Symbol, VenueName
from engine.ledger.part import LedgerPart
from engine.ledger.records import BalanceBaseline
from engine.ledger.statements import Statement, require_finite, retry_transient
from engine.venues.base import BalanceReport, InstrumentRules

SQL_RECORD_BALANCES = Statement(
    """
    INSERT INTO balances (account, venue, asset, free, locked, venue_ts, received_at)
    SELECT :account, t.venue, t.asset, t.free, t.locked, t.venue_ts, t.received_at
    FROM unnest(
        CAST(:venue AS text[]), CAST(:asset AS text[]), CAST(:free AS numeric[]),
        CAST(:locked AS numeric[]), CAST(:venue_ts AS timestamptz[]),
        CAST(:received_at AS timestamptz[])
    ) AS t(venue, asset, free, locked, venue_ts, received_at)
    """
)
# Per asset, the newest report: stream updates carry only the assets that changed.
SQL_LATEST_BALANCES = Statement(
    """
    SELECT DISTINCT ON (asset) venue, asset, free, locked, venue_ts, received_at
    FROM balances WHERE account = :account AND venue = :venue
    ORDER BY asset, received_at DESC, id DESC
    """
)

SQL_UPSERT_INSTRUMENT = Statement(
    """
    INSERT INTO instruments AS i
        (venue, symbol, base_asset, quote_asset, tick_size, step_size, min_notional, updated_at)
    VALUES (:venue, :symbol, :base_asset, :quote_asset, :tick_size, :step_size, :min_notional,
            :now)
    ON CONFLICT (venue, symbol) DO UPDATE
        SET base_asset = EXCLUDED.base_asset, quote_asset = EXCLUDED.quote_asset,
            tick_size = EXCLUDED.tick_size, step_size = EXCLUDED.step_size,
            min_notional = EXCLUDED.min_notional, updated_at = EXCLUDED.updated_at
    """
)
SQL_INSTRUMENTS = Statement(
    "SELECT symbol, base_asset, quote_asset FROM instruments WHERE venue = :venue ORDER BY symbol"
)

# -- balance reconciliation ------------------------------------------------------------------

SQL_FILL_WATERMARK = Statement(
    "SELECT COALESCE(max(id), 0) FROM fills WHERE account = :account AND venue = :venue"
)
SQL_FILL_SYMBOLS = Statement(
    "SELECT DISTINCT symbol FROM fills WHERE account = :account AND venue = :venue"
)
SQL_BALANCE_BASELINES = Statement(
    """SELECT asset, total, fill_id, taken_at FROM balance_baselines
    WHERE account = :account AND venue = :venue ORDER BY asset"""
)
SQL_SAVE_BASELINES = Statement(
    """
    INSERT INTO balance_baselines AS b (account, venue, asset, total, fill_id, taken_at)
    SELECT :account, :venue, t.asset, t.total, :fill_id, :now
    FROM unnest(CAST(:asset AS text[]), CAST(:total AS numeric[])) AS t(asset, total)
    ON CONFLICT (account, venue, asset) DO UPDATE
        SET total = EXCLUDED.total, fill_id = EXCLUDED.fill_id, taken_at = EXCLUDED.taken_at
    """
)
# What the fills after each asset's baseline did to that asset, up to :upto: the base asset
# moves by the signed quantity, the quote asset by the signed notional the other way, the fee's
# asset (base on Binance-style buys, quote, or a third asset such as BNB) by minus the fee.
SQL_BALANCE_EFFECTS = Statement(
    """
    WITH fx AS (
        SELECT f.id, f.side, f.qty, f.price, f.fee, f.fee_asset, i.base_asset, i.quote_asset
        FROM fills f JOIN instruments i ON i.venue = f.venue AND i.symbol = f.symbol
        WHERE f.account = :account AND f.venue = :venue AND f.id <= :upto
    ),
    effects AS (
        SELECT base_asset AS asset, id, CASE WHEN side = 'BUY' THEN qty ELSE -qty END AS delta
        FROM fx
        UNION ALL
        SELECT quote_asset, id, CASE WHEN side = 'BUY' THEN -qty * price ELSE qty * price END
        FROM fx
        UNION ALL
        SELECT fee_asset, id, -fee FROM fx WHERE fee_asset IS NOT NULL AND fee <> 0
    )
    SELECT b.asset, COALESCE(sum(e.delta), 0) AS delta
    FROM balance_baselines b
    LEFT JOIN effects e ON e.asset = b.asset AND e.id > b.fill_id
    WHERE b.account = :account AND b.venue = :venue
    GROUP BY b.asset
    """
)
# Settlements up to :upto, with their market's assets (a settlement of a market without an
# instrument row is not counted, like its fills).
SQL_SETTLEMENT_EFFECTS = Statement(
    """
    SELECT st.id, st.symbol, st.payout, st.recorded_at, i.base_asset, i.quote_asset
    FROM settlements st JOIN instruments i ON i.venue = st.venue AND i.symbol = st.symbol
    WHERE st.account = :account AND st.venue = :venue AND st.id <= :upto
    ORDER BY st.id
    """
)
SQL_FILL_SYMBOLS_WITHOUT_INSTRUMENT = Statement(
    """
    SELECT DISTINCT f.symbol FROM fills f
    LEFT JOIN instruments i ON i.venue = f.venue AND i.symbol = f.symbol
    WHERE f.account = :account AND f.venue = :venue AND i.symbol IS NULL
    """
)
# Which strategies trade the symbols an asset belongs to: the scope a drift in it pauses.
SQL_STRATEGIES_OF_ASSET = Statement(
    """
    SELECT DISTINCT o.strategy_id FROM orders o
    JOIN instruments i ON i.venue = o.venue AND i.symbol = o.symbol
    WHERE o.account = :account AND o.venue = :venue
      AND (i.base_asset = :asset OR i.quote_asset = :asset)
    ORDER BY o.strategy_id
    """
)


class Balances(LedgerPart):
    """``ledger.balances``: balances, instruments, baselines and expected balances."""

    @retry_transient
    async def record(self, reports: Sequence[BalanceReport]) -> None:
        if not reports:
            return
        for r in reports:
            require_finite(f"balance of {r.asset} on {r.venue}", free=r.free, locked=r.locked)
        async with self._connection() as db:
            await SQL_RECORD_BALANCES.run(
                db,
                {
                    "account": self.account,
                    "venue": [r.venue for r in reports],
                    "asset": [r.asset for r in reports],
                    "free": [r.free for r in reports],
                    "locked": [r.locked for r in reports],
                    "venue_ts": [r.venue_ts for r in reports],
                    "received_at": [r.received_at for r in reports],
                },
            )

    async def latest(self) -> dict[Asset, BalanceReport]:
        """Per asset, the newest balance report recorded for this account and venue."""
        async with self._connection() as db:
            result = await SQL_LATEST_BALANCES.run(
                db, {"account": self.account, "venue": self.venue}
            )
            return {
                Asset(row["asset"]): BalanceReport(
                    venue=VenueName(row["venue"]),
                    asset=Asset(row["asset"]),
                    free=row["free"],
                    locked=row["locked"],
                    venue_ts=row["venue_ts"],
                    received_at=row["received_at"],
                )
                for row in result
            }

    @retry_transient
    async def upsert_instrument(self, rules: InstrumentRules) -> None:
        """Remember a symbol's assets and grid (the engine calls this whenever it fetches the
        venue's rules), so fills can be turned into balance changes and base-asset fees."""
        require_finite(
            f"instrument {rules.symbol} on {self.venue}",
            tick_size=rules.tick_size,
            step_size=rules.step_size,
            min_notional=rules.min_notional,
        )
        async with self._connection() as db:
            await SQL_UPSERT_INSTRUMENT.run(
                db,
                {
                    "venue": self.venue,
                    "symbol": rules.symbol,
                    "base_asset": rules.base_asset,
                    "quote_asset": rules.quote_asset,
                    "tick_size": rules.tick_size,
                    "step_size": rules.step_size,
                    "min_notional": rules.min_notional,
                    "now": self._clock(),
                },
            )

    async def instruments(self) -> dict[Symbol, tuple[Asset, Asset]]:
        """``symbol -> (base asset, quote asset)`` for this venue."""
        async with self._connection() as db:
            result = await SQL_INSTRUMENTS.run(db, {"venue": self.venue})
            return {Symbol(s): (Asset(b), Asset(q)) for s, b, q in map(tuple, result)}

    def _account_venue(self) -> dict[str, Any]:
        return {"account": self.account, "venue": self.venue}

    async def fill_watermark(self) -> int:
        """The newest ``fills.id`` of this account on this venue (0 without fills)."""
        async with self._connection() as db:
            return int((await SQL_FILL_WATERMARK.run(db, self._account_venue())).scalar())

    async def fill_symbols(self) -> set[Symbol]:
        async with self._connection() as db:
            rows = await SQL_FILL_SYMBOLS.run(db, self._account_venue())
            return {Symbol(r[0]) for r in rows}

    async def symbols_without_instrument(self) -> set[Symbol]:
        async with self._connection() as db:
            rows = await SQL_FILL_SYMBOLS_WITHOUT_INSTRUMENT.run(db, self._account_venue())
            return {Symbol(r[0]) for r in rows}

    async def baselines(self) -> dict[Asset, BalanceBaseline]:
        async with self._connection() as db:
            rows = await SQL_BALANCE_BASELINES.run(db, self._account_venue())
            return {
                Asset(r["asset"]): BalanceBaseline(
                    asset=Asset(r["asset"]),
                    total=r["total"],
                    fill_id=r["fill_id"],
                    taken_at=r["taken_at"],
                )
                for r in rows
            }

    @retry_transient
    async def save_baselines(
        self,
        totals: Mapping[Asset, Decimal],
        *,
        fill_id: int,
        taken_at: datetime | None = None,
    ) -> None:
        """Record the venue's totals as the baseline, containing every fill up to ``fill_id``
        and every settlement recorded before ``taken_at`` (now when not given): the moment
        before the venue's balances were read."""
        if not totals:
            return
        for asset, total in totals.items():
            require_finite(f"balance baseline of {asset}", total=total)
        assets = sorted(totals)
        async with self._connection() as db:
            await SQL_SAVE_BASELINES.run(
                db,
                {
                    **self._account_venue(),
                    "asset": assets,
                    "total": [totals[a] for a in assets],
                    "fill_id": fill_id,
                    "now": taken_at or self._clock(),
                },
            )

    async def expected(
        self, *, upto_fill_id: int, upto_settlement_id: int | None = None
    ) -> dict[Asset, Decimal]:
        """Per asset with a baseline: the baseline plus what fills after it (up to
        ``upto_fill_id``) did to the asset, plus what settlements (up to
        ``upto_settlement_id``, all when ``None``) recorded after it did. Fills of symbols
        missing from ``instruments`` are not counted: check :meth:`symbols_without_instrument`
        first.

        A settled market's contracts leave its base asset and pay ``payout`` each in its
        quote asset. What was held is the base asset's expected total (its baseline, from
        before the settlement, plus every fill of the market: a settled market trades no
        more), so contracts held before tradectl traded settle too. When the base asset's
        baseline was taken after the settlement, what was held is no longer known: the quote
        asset's payout is then not counted (both baselines are taken at the same agreeing
        check, so this is a quote asset that was drifting anyway).
        """
        baselines = await self.baselines()
        params = self._account_venue()
        async with self._connection() as db:
            rows = await SQL_BALANCE_EFFECTS.run(db, {**params, "upto": upto_fill_id})
            deltas = {Asset(r["asset"]): r["delta"] for r in rows}
            upto = 2**62 if upto_settlement_id is None else upto_settlement_id
            settled = await SQL_SETTLEMENT_EFFECTS.run(db, {**params, "upto": upto})
        expected = {a: b.total + deltas.get(a, Decimal(0)) for a, b in baselines.items()}
        for s in settled:
            base, quote = Asset(s["base_asset"]), Asset(s["quote_asset"])
            base_line, quote_line = baselines.get(base), baselines.get(quote)
            if base_line is None or base_line.taken_at >= s["recorded_at"]:
                continue  # the baseline already holds none of it
            held = expected[base]
            expected[base] = Decimal(0)
            if quote_line is not None and quote_line.taken_at < s["recorded_at"]:
                expected[quote] += held * s["payout"]
        return expected

    async def strategies_trading(self, asset: Asset) -> list[StrategyId]:
        """Strategies that have ordered a symbol whose base or quote asset is ``asset``."""
        async with self._connection() as db:
            rows = await SQL_STRATEGIES_OF_ASSET.run(db, {**self._account_venue(), "asset": asset})
            return [StrategyId(r[0]) for r in rows]
