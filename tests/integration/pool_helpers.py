"""Accounts on simulators, shared by the pool tests: one Binance-protocol simulator per account
(each with its own key), the account rows pointing at them, and what each account traded."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.accounts import AccountConfig
from engine.config import VenueKind
from engine.demo import simulator_config
from engine.ledger.accounts import Accounts
from engine.ledger.records import Operator
from engine.venues.simulator import SimulatorHandle, run_simulator
from tests.chaos.harness import STRATEGIES_FILE, SYMBOLS

OPERATOR = Operator(actor="test", reason="pool test")
#: fast leases and loops, as the chaos suite runs the engine
FAST = {
    "TRADECTL_LEASE_TTL_S": "2",
    "TRADECTL_CONSISTENCY_WINDOW_S": "0.5",
    "TRADECTL_RESOLVE_INTERVAL_S": "0.3",
    "TRADECTL_RECONCILE_INTERVAL_S": "0.7",
    "TRADECTL_STATUS_INTERVAL_S": "3600",
    "TRADECTL_STRATEGIES_FILE": str(STRATEGIES_FILE),
}


def key_env(account: str) -> tuple[str, str]:
    name = account.upper().replace("-", "_")
    return f"POOLTEST_{name}_KEY", f"POOLTEST_{name}_SECRET"


@contextlib.asynccontextmanager
async def simulators(
    accounts: list[str], *, market_interval: float | None = 0.25
) -> AsyncIterator[dict[str, SimulatorHandle]]:
    """One simulator per account, keys ``key-<account>``; the market steps by itself unless
    ``market_interval`` is None (the test steps it)."""
    async with contextlib.AsyncExitStack() as stack:
        sims = {}
        for i, account in enumerate(accounts):
            config = dataclasses.replace(
                simulator_config(SYMBOLS, seed=100 + i),
                api_key=f"key-{account}",
                api_secret=f"secret-{account}",
                market_interval=market_interval,
            )
            sims[account] = await stack.enter_async_context(run_simulator(config))
        yield sims


def credentials_env(accounts: list[str], *, wrong: frozenset[str] = frozenset()) -> dict[str, str]:
    env = {}
    for account in accounts:
        key, secret = key_env(account)
        env[key] = "not-the-key" if account in wrong else f"key-{account}"
        env[secret] = f"secret-{account}"
    return env


async def add_accounts(db: AsyncEngine, sims: dict[str, SimulatorHandle]) -> None:
    book = Accounts(db)
    for account, sim in sims.items():
        key, secret = key_env(account)
        await book.add(
            AccountConfig(
                account=account,
                venue=VenueKind.BINANCE,
                environment="testnet",
                credentials={
                    "binance_api_key": f"env:{key}",
                    "binance_api_secret": f"env:{secret}",
                },
                settings={
                    "binance_rest_url": sim.rest_url,
                    "binance_ws_api_url": sim.ws_api_url,
                    "binance_stream_url": sim.stream_url,
                },
            ),
            OPERATOR,
        )


async def scalar(db: AsyncEngine, sql: str, **params: Any) -> Any:
    async with db.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar()


async def fills_of(db: AsyncEngine, account: str) -> int:
    return int(await scalar(db, "SELECT count(*) FROM fills WHERE account = :a", a=account))


def db_env(url: URL) -> dict[str, str]:
    return {"DATABASE_URL": url.render_as_string(hide_password=False)}
