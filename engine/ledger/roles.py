"""Database roles: who may do what to each ledger table.

Three roles, none of them a superuser:

* the **owner** owns every schema object and runs the migrations (``tradectl migrate``);
* the **engine** role is what the engine and the operator commands connect as: it reads
  everything and inserts, but changes only the columns listed below and deletes nothing. Not
  being the owner, it cannot ``ALTER TABLE``, ``DISABLE TRIGGER``, ``DROP`` or ``TRUNCATE``:
  the append-only triggers on ``fills`` and ``order_events`` bind it for good;
* the **read-only** role serves ``psql`` inspection and dashboards: ``SELECT`` only.

:data:`ENGINE_ACCESS` is the one place that says what the engine may do to each table; every
table in :mod:`engine.ledger.schema` must appear in it (a test checks), so a table added by a
migration is never silently writable or silently unusable. :func:`apply_grants` turns it into
``GRANT`` statements after every migration; :func:`provision_roles` (run with an administrator's
connection: the embedded server's superuser, or compose's ``db-roles`` service) creates the
roles and hands schema objects of an older, single-role install over to the owner.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
from sqlalchemy.engine import URL

from engine.exceptions import ConfigError
from engine.ledger.db import asyncpg_connect_kwargs, translate_error
from engine.ledger.views import VIEWS

log = logging.getLogger("tradectl.ledger.roles")


@dataclass(frozen=True, slots=True)
class Access:
    """What the engine role may do to one table, besides reading it."""

    insert: bool = True
    #: the columns an UPDATE (or ``ON CONFLICT DO UPDATE``, or ``SELECT … FOR UPDATE``) may
    #: touch; empty: the rows are never changed once written
    update: tuple[str, ...] = ()


#: facts, written once: the engine inserts and reads, never changes a row
APPEND_ONLY = Access()


def updates(*columns: str) -> Access:
    return Access(update=columns)


ENGINE_ACCESS: dict[str, Access] = {
    # a decision is never re-worded; a hold's count of the identical holds after it grows
    # (engine.domain.holds)
    "decisions": updates("repeats", "last_repeat_at"),
    "fills": APPEND_ONLY,
    "order_events": APPEND_ONLY,
    "balances": APPEND_ONLY,
    "operator_actions": APPEND_ONLY,
    "settlements": APPEND_ONLY,
    # the outbox: the delivery task and the cooldown update delivery state, never the message
    "alerts": updates(
        "delivered_at",
        "attempts",
        "next_attempt_at",
        "last_error",
        "delivered_to",
        "suppressed",
        "summarized",
        "suppressed_into",
    ),
    # the loss limits' day-start and high-water marks, upserted by the risk gate
    "loss_marks": updates("day_start", "day_start_pnl", "peak_pnl", "peak_at", "updated_at"),
    # the latest mid per symbol, upserted by the status task
    "marks": updates("price", "marked_at"),
    # an order's identity (side, quantity, price, account) is fixed at reservation
    "orders": updates(
        "state",
        "updated_at",
        "venue_order_id",
        "submitted_at",
        "acked_at",
        "venue_ts",
        "last_error",
    ),
    # a control is cleared, never re-worded
    "controls": updates("active", "cleared_at", "cleared_by"),
    # an incident is resolved, never re-worded
    "incidents": updates("resolved_at", "resolution_note"),
    "operator_requests": updates("handled_at", "handled_by", "result"),
    # current-state rows, upserted whole
    "leases": updates("holder", "epoch", "heartbeat_at", "expires_at"),
    "instruments": updates(
        "base_asset", "quote_asset", "tick_size", "step_size", "min_notional", "updated_at"
    ),
    "balance_baselines": updates("total", "fill_id", "taken_at"),
    # configuration the owner writes (`tradectl accounts`): the engine only reads it
    "accounts": Access(insert=False),
    # each engine upserts its own heartbeat and deletes nothing (an expired row is just old)
    "engines": updates("heartbeat_at", "expires_at", "max_accounts", "started_at"),
}

# pg_ is reserved for the server's own roles
_ROLE_NAME = re.compile(r"(?!pg_)[a-z_][a-z0-9_]{0,62}")

# Serializes provisioning and grants within one database: two tradectl processes starting
# against the same embedded server both run them (the key is arbitrary, fixed).
_LOCK_KEY = 7_462_914_305_118


def check_role_name(name: str) -> str:
    """A role name that needs no quoting: lower-case letters, digits and ``_``."""
    if not _ROLE_NAME.fullmatch(name):
        raise ValueError(
            "expected 1-63 lower-case letters, digits or '_', not starting with a digit or pg_"
        )
    return name


@dataclass(frozen=True, slots=True)
class RoleNames:
    owner: str = "tradectl_owner"
    engine: str = "tradectl_engine"
    readonly: str = "tradectl_readonly"

    def __post_init__(self) -> None:
        for field, name in (("owner", self.owner), ("engine", self.engine),
                            ("readonly", self.readonly)):  # fmt: skip
            try:
                check_role_name(name)
            except ValueError as exc:
                raise ConfigError(f"TRADECTL_{field.upper()}_ROLE: {exc}") from None
        if len({self.owner, self.engine, self.readonly}) != 3:
            raise ConfigError(
                "TRADECTL_OWNER_ROLE, TRADECTL_ENGINE_ROLE and TRADECTL_READONLY_ROLE must be "
                "three different roles (the engine must not own the tables it writes)"
            )


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    # standard_conforming_strings is on (the default since 9.1): only quotes need doubling
    return "'" + value.replace("'", "''") + "'"


async def _connect(url: URL) -> asyncpg.Connection:
    try:
        conn: asyncpg.Connection = await asyncpg.connect(**asyncpg_connect_kwargs(url))  # type: ignore[call-overload]
        return conn
    except Exception as exc:
        mapped = translate_error(exc, url)
        if mapped is exc:
            raise
        raise mapped from None


def grant_statements(
    names: RoleNames, schema: str, relations: Sequence[str], sequences: Sequence[str]
) -> list[str]:
    """What :func:`apply_grants` runs, given the relations (tables and views) in the ledger's
    schema and the sequences behind the ids of the tables the engine inserts into. A table
    without a declared access gets nothing."""
    engine, readonly = _q(names.engine), _q(names.readonly)
    stmts = [
        # From nothing, so a narrower declaration takes effect (revoking a table's privileges
        # revokes its column privileges too). One transaction: no moment without them.
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {_q(schema)} FROM {engine}, {readonly}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {_q(schema)} FROM {engine}, {readonly}",
        f"GRANT USAGE ON SCHEMA {_q(schema)} TO {engine}, {readonly}",
    ]
    tables = [t for t in relations if t in ENGINE_ACCESS]
    for table in tables:
        access = ENGINE_ACCESS[table]
        privileges = ["SELECT", *(["INSERT"] if access.insert else [])]
        if access.update:
            privileges.append(f"UPDATE ({', '.join(_q(c) for c in access.update)})")
        stmts.append(f"GRANT {', '.join(privileges)} ON {_q(table)} TO {engine}")
    # nextval() for the ids of the rows it inserts (USAGE: not setval())
    stmts.extend(f"GRANT USAGE ON SEQUENCE {_q(seq)} TO {engine}" for seq in sequences)
    # alembic_version: the engine refuses to run on a schema that is not at its head
    others = [r for r in (*(name for name, _ in VIEWS), "alembic_version") if r in relations]
    stmts.extend(f"GRANT SELECT ON {_q(r)} TO {engine}" for r in others)
    stmts.extend(f"GRANT SELECT ON {_q(r)} TO {readonly}" for r in (*tables, *others))
    return stmts


_SCHEMA = "(SELECT oid FROM pg_namespace WHERE nspname = current_schema())"
_OWNER = "(SELECT oid FROM pg_roles WHERE rolname = $1)"
_RELATIONS = f"""
    SELECT c.relname FROM pg_class c
    WHERE c.relnamespace = {_SCHEMA} AND c.relkind IN ('r', 'p', 'v', 'm')
"""
# The sequences behind serial / identity columns of the given tables.
_ID_SEQUENCES = f"""
    SELECT s.relname FROM pg_class s
    JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid
                    AND d.deptype IN ('a', 'i')
    JOIN pg_class t ON t.oid = d.refobjid
    WHERE s.relkind = 'S' AND s.relnamespace = {_SCHEMA}
      AND t.relname = ANY($1::text[])
"""


async def apply_grants(url: URL, names: RoleNames) -> bool:
    """Grant the engine and read-only roles their privileges on the ledger (after a migration,
    connected as the owner). Idempotent. False, with a warning, when the roles do not exist
    (a single-role install: everything then runs with the connecting role's privileges)."""
    conn = await _connect(url)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            found = {
                r["rolname"]
                for r in await conn.fetch(
                    "SELECT rolname FROM pg_roles WHERE rolname = ANY($1::text[])",
                    [names.engine, names.readonly],
                )
            }
            me = await conn.fetchval("SELECT current_user")
            if found != {names.engine, names.readonly} or me in found:
                log.warning(
                    "no least-privilege grants: roles %s and %s %s; the engine runs with the "
                    "privileges of the role it connects as (README: Database roles)",
                    names.engine,
                    names.readonly,
                    f"include the migrating role {me}" if me in found else "do not all exist",
                )
                return False
            schema = await conn.fetchval("SELECT current_schema()")
            relations = [r["relname"] for r in await conn.fetch(_RELATIONS)]
            inserted = [t for t in relations if t in ENGINE_ACCESS and ENGINE_ACCESS[t].insert]
            sequences = [r["relname"] for r in await conn.fetch(_ID_SEQUENCES, inserted)]
            for stmt in grant_statements(names, schema, relations, sequences):
                await conn.execute(stmt)
        return True
    finally:
        await conn.close()


async def provision_roles(
    admin_url: URL, names: RoleNames, passwords: dict[str, str] | None = None
) -> None:
    """Create the three roles (LOGIN; a password where one is given), let the owner create in
    the ledger's schema and no one else, and hand every schema object not yet the owner's
    (an install from before the roles, run as one role) over to it. Idempotent; run with a
    superuser's (or a CREATEROLE member's) connection to the ledger's database."""
    conn = await _connect(admin_url)
    try:
        # Roles are cluster-wide and the lock is per database: two databases on one server
        # can race to create a role. The loser retries and finds it.
        for attempt in range(3):
            try:
                async with conn.transaction():
                    await _provision(conn, names, passwords or {})
                return
            except (asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
                if attempt == 2:
                    raise
    finally:
        await conn.close()


async def _provision(conn: asyncpg.Connection, names: RoleNames, passwords: dict[str, str]) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
    for role in (names.owner, names.engine, names.readonly):
        if not await conn.fetchval("SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)", role):
            await conn.execute(f"CREATE ROLE {_q(role)} LOGIN")
        if passwords.get(role):
            await conn.execute(f"ALTER ROLE {_q(role)} LOGIN PASSWORD {_literal(passwords[role])}")
    for variable, role in (("TRADECTL_ENGINE_ROLE", names.engine),
                           ("TRADECTL_READONLY_ROLE", names.readonly)):  # fmt: skip
        if await conn.fetchval(
            "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = $1", role
        ):
            raise ConfigError(
                f"{variable} names {role}, a superuser (or a role that bypasses row security): "
                "it could rewrite the ledger; name a role of its own"
            )
    schema = _q(await conn.fetchval("SELECT current_schema()"))
    await conn.execute(f"GRANT USAGE, CREATE ON SCHEMA {schema} TO {_q(names.owner)}")
    await conn.execute(
        f"GRANT USAGE ON SCHEMA {schema} TO {_q(names.engine)}, {_q(names.readonly)}"
    )
    await conn.execute(f"REVOKE CREATE ON SCHEMA {schema} FROM PUBLIC")
    await _adopt(conn, names.owner)


# Tables first: a table's serial sequences move with it (and refuse to move alone).
_FOREIGN_RELATIONS = f"""
    SELECT c.oid, c.relkind::text AS relkind, format('%I', c.relname) AS name FROM pg_class c
    WHERE c.relnamespace = {_SCHEMA}
      AND c.relkind IN ('r', 'p', 'v', 'm', 'S') AND c.relowner <> {_OWNER}
    ORDER BY c.relkind = 'S', c.relname
"""
_FOREIGN_FUNCTIONS = f"""
    SELECT p.oid::regprocedure::text AS name FROM pg_proc p
    WHERE p.pronamespace = {_SCHEMA} AND p.proowner <> {_OWNER}
"""
_ALTER = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE"}


async def _adopt(conn: asyncpg.Connection, owner: str) -> None:
    """Hand the schema's tables, views, sequences and functions over to ``owner``."""
    moved = 0
    for row in await conn.fetch(_FOREIGN_RELATIONS, owner):
        if row["relkind"] == "S" and not await conn.fetchval(
            "SELECT relowner <> (SELECT oid FROM pg_roles WHERE rolname = $2) FROM pg_class "
            "WHERE oid = $1",
            row["oid"],
            owner,
        ):
            continue  # moved with its table
        await conn.execute(f"ALTER {_ALTER[row['relkind']]} {row['name']} OWNER TO {_q(owner)}")
        moved += 1
    for row in await conn.fetch(_FOREIGN_FUNCTIONS, owner):
        await conn.execute(f"ALTER FUNCTION {row['name']} OWNER TO {_q(owner)}")
        moved += 1
    if moved:
        log.info("handed %d ledger objects over to the owner role %s", moved, owner)
