"""No NaN or Infinity in any money or quantity column.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

Hand-written, a frozen copy of engine/ledger/schema.py at this revision (never import it here).

Why: Postgres ``numeric`` accepts ``'NaN'``, ``'Infinity'`` and ``'-Infinity'`` (14+), and NaN
sorts above every number, so ``'NaN'::numeric > 0`` is true. ``ck_fills_qty_positive`` therefore
let an execution report with quantity "NaN" into the append-only ``fills`` for good (the Binance
decoders now refuse it; the database must refuse it too), where it poisons every sum derived
from fills: the order's filled quantity, positions, balances.

Schema: one CHECK per ``NUMERIC`` column, ``ck_<table>_<column>_finite``:
``<column> NOT IN ('NaN', 'Infinity', '-Infinity')``. NULL passes (the nullable columns stay
nullable). Checked on Postgres 18: ``NOT IN`` is false for all three (numeric NaN equals NaN)
and true for every finite value; ``< 'Infinity' AND > '-Infinity'`` would reject NaN as well
(NaN sorts above Infinity), ``<> 'NaN'`` alone would not reject the infinities.

Data rule (upgrade): a row already holding NaN or ±Infinity makes the upgrade fail, naming the
table, the column and the rows (by their key), and nothing changes. Nothing is deleted or
rewritten here: ``fills`` is append-only (a fact from the venue that has to be understood,
not dropped), and in the other tables the right value (the venue's balance, the instrument's
grid, the decision's quantity) is a matter for the operator, who corrects the rows and runs the
upgrade again. Fixing a fill needs its append-only trigger lifted by the table owner on purpose.

Downgrade: drops the checks.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NON_FINITE = "('NaN', 'Infinity', '-Infinity')"

#: table -> (the columns naming a row in an error, its NUMERIC columns), as of this revision
NUMERIC_COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "decisions": (("decision_id",), ("quantity", "limit_price")),
    "orders": (("client_order_id",), ("requested_qty", "limit_price")),
    "fills": (("id", "account", "trade_id"), ("qty", "price", "fee")),
    "balances": (("id", "account", "asset"), ("free", "locked")),
    "instruments": (("venue", "symbol"), ("tick_size", "step_size", "min_notional")),
    "balance_baselines": (("account", "venue", "asset"), ("total",)),
}

#: rows named per column in the error; the count says how many more there are
SHOWN = 20


def _name(table: str, column: str) -> str:
    return f"ck_{table}_{column}_finite"


def _non_finite_rows() -> list[str]:
    conn = op.get_bind()
    problems: list[str] = []
    for table, (keys, columns) in NUMERIC_COLUMNS.items():
        for column in columns:
            where = f"{column} IN {NON_FINITE}"
            count = conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE {where}")).scalar()
            if not count:
                continue
            rows = conn.execute(
                sa.text(
                    f"SELECT {', '.join(keys)}, {column}::text FROM {table} WHERE {where} "
                    f"ORDER BY {', '.join(keys)} LIMIT {SHOWN}"
                )
            ).all()
            named = "; ".join(
                ", ".join(f"{k}={v}" for k, v in zip((*keys, column), row, strict=True))
                for row in rows
            )
            problems.append(f"{table}.{column}: {count} row(s): {named}")
    return problems


def upgrade() -> None:
    problems = _non_finite_rows()
    if problems:
        raise RuntimeError(
            "cannot upgrade to 0004 (no NaN or Infinity in money and quantity columns): "
            + " | ".join(problems)
            + ". Nothing was changed. Correct these rows (the venue's own figures say what "
            "they should be) and run `tradectl migrate` again; fills are append-only, so "
            "correcting one means lifting the fills_append_only trigger on purpose"
        )
    for table, (_, columns) in NUMERIC_COLUMNS.items():
        for column in columns:
            op.create_check_constraint(_name(table, column), table, f"{column} NOT IN {NON_FINITE}")


def downgrade() -> None:
    for table, (_, columns) in reversed(NUMERIC_COLUMNS.items()):
        for column in reversed(columns):
            op.drop_constraint(_name(table, column), table, type_="check")
