"""What the schema holds beyond its tables: the views and the position fold, the triggers that
make the append-only tables refuse a rewrite, and the reservation gate. ``create_all`` builds
the whole schema from :mod:`engine.ledger.schema` and this module (tests compare it with the
migrations)."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from engine.ledger.control_gate import DROP_RESERVATION_GATE, RESERVATION_GATE_FUNCTION
from engine.ledger.schema import metadata
from engine.ledger.views import POSITION_FOLD_FUNCTION, VIEWS

# Append-only tables: fills, order events, the operator journal and settlements are facts. A
# mistake is corrected by a new row (an incident, a compensating event), never by rewriting
# history.

APPEND_ONLY_TABLES = ("fills", "order_events", "operator_actions", "settlements")

APPEND_ONLY_FUNCTION = """
CREATE FUNCTION ledger_refuse_rewrite() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'fills and order_events are facts; record a correction as a new row '
                     '(or an incident) instead of rewriting history';
END;
$$
"""


def _append_only_triggers(table: str) -> tuple[str, str]:
    return (
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_rewrite()",
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_rewrite()",
    )


#: Statements to run after the tables exist, in order.
POST_CREATE_DDL: tuple[str, ...] = (
    POSITION_FOLD_FUNCTION,
    *(sql for _, sql in VIEWS),
    APPEND_ONLY_FUNCTION,
    *(stmt for table in APPEND_ONLY_TABLES for stmt in _append_only_triggers(table)),
    RESERVATION_GATE_FUNCTION,
)

#: Statements that undo POST_CREATE_DDL, in order (before the tables are dropped).
PRE_DROP_DDL: tuple[str, ...] = (
    DROP_RESERVATION_GATE,
    *(
        f"DROP TRIGGER IF EXISTS {table}_{suffix} ON {table}"
        for table in APPEND_ONLY_TABLES
        for suffix in ("append_only", "no_truncate")
    ),
    "DROP FUNCTION IF EXISTS ledger_refuse_rewrite()",
    *(f"DROP VIEW IF EXISTS {name}" for name, _ in reversed(VIEWS)),
    "DROP FUNCTION IF EXISTS position_fold(text[], numeric[], numeric[], numeric[], text[])",
)


def create_all(conn: Connection) -> None:
    """Build the schema straight from this module (tests compare it with the migrations)."""
    metadata.create_all(conn)
    for stmt in POST_CREATE_DDL:
        conn.exec_driver_sql(stmt)


def drop_all(conn: Connection) -> None:
    for stmt in PRE_DROP_DDL:
        conn.exec_driver_sql(stmt)
    metadata.drop_all(conn)
