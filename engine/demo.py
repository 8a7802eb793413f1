"""The demo exchange: the built-in simulator's state kept in ``TRADECTL_DATA_DIR`` so that
``tradectl run``, Ctrl-C, ``tradectl run`` continues the same exchange the ledger remembers.

What is saved: the whole simulator (balances, orders, trades, market position, ids) plus the
ledger account it belongs to, in ``<data dir>/exchange/<TRADECTL_ACCOUNT>.json``: at start,
every :data:`SAVE_INTERVAL_S` while running and on every stop, each time atomically (temp file,
fsync, rename), so a kill -9 leaves the previous complete file.

After a kill -9 the file may be older than the ledger. At start the saved exchange is restored
only if it contains everything the ledger knows came from the venue (every fill's trade id,
every acknowledged order, every order the ledger closed is closed there too) and nothing with
our prefix the ledger does not know. The restored venue may be *ahead* of the ledger (a fill
not recorded yet): the startup reconciliation repairs that by fetching the fill. Otherwise the
exchange starts fresh, and so does the ledger account: a fresh exchange under an account with
history would be a balance drift and positions nobody holds. Fills and order events cannot be
rewritten (the database refuses it), so the old account's rows stay as they are and this run
trades under the first unused name of ``<account>``, ``<account>-2``, ``<account>-3``…; one
line on stdout says what was reset and why. The file records the account in use, which the
``tradectl`` operations commands read (``ledger_account``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.config import Settings, VenueKind
from engine.domain.ids import is_ours
from engine.domain.types import OrderState, Symbol, utc_now
from engine.exceptions import ConfigError
from engine.observability import json_output

if TYPE_CHECKING:
    # imported when used: the paper venue's runs need no web server
    from engine.venues.simulator import SimulatorConfig, SimulatorState

log = structlog.get_logger("tradectl.demo")

FILE_FORMAT = 1
#: how much a kill -9 can lose at most (then the next start resets rather than mixes)
SAVE_INTERVAL_S = 1.0
#: the venue name the ledger records for the built-in simulator
VENUE = "simulator"
_TERMINAL = {OrderState.FILLED, OrderState.CANCELED, OrderState.REJECTED, OrderState.EXPIRED}
#: account names go to 64 characters (Settings); a generation suffix must fit
_ACCOUNT_MAX = 64


def exchange_file(settings: Settings) -> Path:
    return settings.data_dir / "exchange" / f"{settings.account}.json"


def ledger_account(settings: Settings) -> Settings:
    """The settings with the ledger account the demo exchange trades as (for the operations
    commands: after a reset, TRADECTL_ACCOUNT=paper trades as ``paper-2``)."""
    if settings.venue is not VenueKind.SIMULATOR:
        return settings
    try:
        account = json.loads(exchange_file(settings).read_text("utf-8")).get("ledger_account")
    except (OSError, ValueError, AttributeError):
        return settings
    if not isinstance(account, str) or not _valid_account(account):
        return settings
    return settings.model_copy(update={"account": account})


@dataclass(frozen=True, slots=True)
class LedgerOrder:
    client_order_id: str
    state: OrderState
    venue_order_id: str | None


def behind_the_ledger(
    state: SimulatorState,
    orders: Iterable[LedgerOrder],
    fills: Iterable[tuple[str, str]],
    *,
    prefix: str,
) -> list[str]:
    """Why the saved exchange cannot continue this ledger account (empty: it can).

    ``fills`` are ``(symbol, trade_id)``. Orders the ledger reserved but the venue never
    acknowledged (``PENDING_SUBMIT``/``UNKNOWN`` without a venue id) may be missing: the engine
    looks them up and resends or expires them, as after a submit lost in transit.
    """
    venue_orders = {o.client_order_id: o for o in state.orders()}
    trades = {(t.symbol, str(t.trade_id)) for t in state.trades()}
    reasons: list[str] = []
    missing_fills = sum(1 for f in fills if f not in trades)
    if missing_fills:
        reasons.append(f"{missing_fills} fill(s) in the ledger are not in the saved exchange")
    known: set[str] = set()
    missing, still_open = 0, 0
    for order in orders:
        known.add(order.client_order_id)
        on_venue = venue_orders.get(order.client_order_id)
        if on_venue is None:
            missing += order.venue_order_id is not None
        elif order.state in _TERMINAL and on_venue.is_open:
            still_open += 1
    if missing:
        reasons.append(f"{missing} acknowledged order(s) in the ledger are not in it")
    if still_open:
        reasons.append(f"{still_open} order(s) the ledger closed are still open in it")
    unknown = [c for c in venue_orders if is_ours(prefix, c) and c not in known]
    if unknown:
        reasons.append(
            f"it holds {len(unknown)} order(s) the ledger does not know (another or a wiped "
            "ledger?)"
        )
    return reasons


@dataclass(slots=True)
class DemoExchange:
    """The exchange this run starts with and the ledger account it trades as."""

    path: Path
    account: str
    state: SimulatorState
    settings: Settings

    def file_data(self, state: SimulatorState) -> dict[str, Any]:
        return {
            "format": FILE_FORMAT,
            "ledger_account": self.account,
            "configured_account": self.settings.account,
            "order_id_prefix": self.settings.order_id_prefix,
            "symbols": _symbols(state.config),
            "saved_at": utc_now().isoformat(),
            "exchange": state.snapshot_data(),
        }

    async def save(self, state: SimulatorState) -> None:
        # Serialised here, in the loop, so the snapshot is one consistent moment; the disk
        # work (fsync) runs off the loop.
        body = json.dumps(self.file_data(state), sort_keys=True)
        await asyncio.to_thread(write_atomically, self.path, body)

    @contextlib.asynccontextmanager
    async def keeping(self, state: SimulatorState) -> AsyncIterator[None]:
        """Save now (the file names the account in use from the first second), every
        :data:`SAVE_INTERVAL_S`, and once more when the run ends, however it ends."""
        await self.save(state)
        stopping = asyncio.Event()

        async def periodic() -> None:
            while not stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SAVE_INTERVAL_S):
                        await stopping.wait()
                if stopping.is_set():
                    return
                try:
                    await self.save(state)
                except OSError as exc:
                    # a full disk must not stop trading; the next save tries again
                    log.warning("demo.save_failed", path=str(self.path), error=exc)

        saver = asyncio.create_task(periodic(), name="demo-exchange-saver")
        try:
            yield
        finally:
            # Not a cancel: a save in flight finishes first, so it cannot land after (and
            # over) the final one.
            stopping.set()
            await saver
            write_atomically(self.path, json.dumps(self.file_data(state), sort_keys=True))


def write_atomically(path: Path, body: str) -> None:
    """Write, fsync, rename, fsync the directory: a crash leaves the old or the new file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with open(fd, "w", encoding="utf-8") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.asynccontextmanager
async def open_exchange(
    settings: Settings, db: AsyncEngine, config: SimulatorConfig
) -> AsyncIterator[DemoExchange]:
    """Lock the data dir's exchange for this run, restore it or start fresh (see the module)."""
    path = exchange_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.with_suffix(".lock")):
        # what a kill -9 in the middle of a save leaves behind (the saved file itself is whole)
        for leftover in path.parent.glob(f".{path.name}.*.tmp"):
            leftover.unlink(missing_ok=True)
        exchange = await _decide(settings, db, config, path)
        yield exchange


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    # Two runs writing one exchange file would each save a different exchange over the other.
    # The kernel drops the lock when the process dies, a kill -9 included.
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"another `tradectl run` uses the demo exchange {lock_path.with_suffix('.json')}; "
                "stop it first (one engine per account and data dir)"
            ) from None
        yield
    finally:
        os.close(fd)


async def _decide(
    settings: Settings, db: AsyncEngine, config: SimulatorConfig, path: Path
) -> DemoExchange:
    reason: str
    data, problem = _read(path)
    if data is not None:
        restored, reason = await _try_restore(settings, db, config, path, data)
        if restored is not None:
            return restored
    elif problem is not None:
        reason = problem
    else:
        reason = f"no saved exchange at {path}"
    from engine.venues.simulator import SimulatorState

    account = await _fresh_account(db, settings.account)
    exchange = DemoExchange(path, account, SimulatorState(config), settings)
    if data is None and problem is None and account == settings.account:
        return exchange  # the first run: nothing to reset, nothing to say
    line = (
        f"demo exchange reset: {reason}; started a fresh exchange, trading as fresh ledger "
        f"account {account!r}"
    )
    if account != settings.account:
        line += (
            f" (TRADECTL_ACCOUNT={settings.account}; the earlier accounts' history stays in the "
            "ledger; `tradectl` commands follow the new account)"
        )
    if not json_output():  # the warning below is the whole of it for a log shipper
        print(line, flush=True)
    log.warning("demo.reset", reason=reason, account=account)
    return exchange


def _read(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``(data, None)``, ``(None, why it is unusable)`` or ``(None, None)`` when absent."""
    try:
        raw = path.read_text("utf-8")
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"the saved exchange {path} is unreadable ({exc.strerror})"
    except ValueError:
        return None, f"the saved exchange {path} is corrupt (not UTF-8 text)"
    try:
        data = json.loads(raw)
    except ValueError:
        return None, f"the saved exchange {path} is corrupt (not JSON)"
    if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
        return None, f"the saved exchange {path} is not in a format this version reads"
    return data, None


async def _try_restore(
    settings: Settings,
    db: AsyncEngine,
    config: SimulatorConfig,
    path: Path,
    data: Mapping[str, Any],
) -> tuple[DemoExchange | None, str]:
    account = data.get("ledger_account")
    if not isinstance(account, str) or not _valid_account(account):
        return None, f"the saved exchange {path} names no valid ledger account"
    if data.get("symbols") != _symbols(config):
        return None, (
            f"the saved exchange lists {data.get('symbols')}, the strategies now trade "
            f"{_symbols(config)}"
        )
    if data.get("order_id_prefix") != settings.order_id_prefix:
        return None, "TRADECTL_ORDER_ID_PREFIX changed since the exchange was saved"
    from engine.venues.simulator import SimulatorState

    state = SimulatorState(config)
    try:
        state.restore_data(data["exchange"])
    except Exception as exc:  # any malformed content: a reset, never a traceback at start
        return None, f"the saved exchange {path} cannot be restored ({type(exc).__name__}: {exc})"
    orders, fills = await _ledger_rows(db, account)
    reasons = behind_the_ledger(state, orders, fills, prefix=settings.order_id_prefix)
    if reasons:
        return None, (
            f"the saved exchange (saved {data.get('saved_at')}) does not match ledger account "
            f"{account!r}: {'; '.join(reasons)} (a kill -9 between two saves?)"
        )
    log.info("demo.restored", path=str(path), account=account, saved=data.get("saved_at"))
    if not json_output():
        print(
            f"demo exchange restored from {path} (saved {data.get('saved_at')}), "
            f"account {account!r}",
            flush=True,
        )
    return DemoExchange(path, account, state, settings), ""


async def _ledger_rows(
    db: AsyncEngine, account: str
) -> tuple[list[LedgerOrder], list[tuple[str, str]]]:
    params = {"account": account, "venue": VENUE}
    async with db.connect() as conn:
        order_rows = await conn.execute(
            text(
                "SELECT client_order_id, state, venue_order_id FROM orders "
                "WHERE account = :account AND venue = :venue"
            ),
            params,
        )
        orders = [LedgerOrder(r[0], OrderState(r[1]), r[2]) for r in order_rows]
        fill_rows = await conn.execute(
            text("SELECT symbol, trade_id FROM fills WHERE account = :account AND venue = :venue"),
            params,
        )
        fills = [(str(r[0]), str(r[1])) for r in fill_rows]
    return orders, fills


async def _fresh_account(db: AsyncEngine, base: str) -> str:
    """The first of ``base``, ``base-2``, ``base-3``… no ledger table has a row of."""
    async with db.connect() as conn:
        tables = (
            await conn.execute(
                text(
                    "SELECT c.table_name FROM information_schema.columns c "
                    "JOIN information_schema.tables t "
                    "  ON t.table_schema = c.table_schema AND t.table_name = c.table_name "
                    "WHERE c.column_name = 'account' AND t.table_type = 'BASE TABLE' "
                    "  AND c.table_schema = current_schema() ORDER BY 1"
                )
            )
        ).scalars()
        # A released lease holds no state; every other table with an account column does
        # (orders, fills, controls, incidents, baselines, requests, and any added later).
        names = [n for n in tables if n != "leases"]
        used = " UNION ALL ".join(
            f'SELECT 1 FROM "{n.replace(chr(34), "")}" WHERE account = :a' for n in names
        )
        generation = 1
        while True:
            candidate = base if generation == 1 else _with_suffix(base, generation)
            if not names:
                return candidate
            taken = (
                await conn.execute(text(f"SELECT EXISTS ({used})"), {"a": candidate})
            ).scalar_one()
            if not taken:
                return candidate
            generation += 1


def _with_suffix(base: str, generation: int) -> str:
    suffix = f"-{generation}"
    return base[: _ACCOUNT_MAX - len(suffix)] + suffix


def _valid_account(account: str) -> bool:
    return 0 < len(account) <= _ACCOUNT_MAX and account.replace("-", "").replace("_", "").isalnum()


def _symbols(config: SimulatorConfig) -> list[str]:
    return sorted(s.symbol for s in config.symbols)


def simulator_config(symbols: tuple[Symbol, ...], *, seed: int) -> SimulatorConfig:
    """The simulator's instruments, from the same catalogue as the paper venue's."""
    from decimal import Decimal

    from engine.venues.paper import DEFAULT_BALANCES, DEFAULT_RULES, DEFAULT_WALKS
    from engine.venues.simulator import SimulatorConfig, SymbolSpec

    unknown = [s for s in symbols if s not in DEFAULT_RULES]
    if unknown:
        raise ConfigError(
            f"the built-in simulator does not list {unknown}; it knows {sorted(DEFAULT_RULES)}. "
            "Change the symbols in TRADECTL_STRATEGIES_FILE."
        )
    specs = []
    for symbol in symbols:
        rules, walk = DEFAULT_RULES[symbol], DEFAULT_WALKS[symbol]
        specs.append(
            SymbolSpec(
                symbol=symbol,
                base_asset=rules.base_asset,
                quote_asset=rules.quote_asset,
                start_price=walk.start,
                tick_size=rules.tick_size,
                step_size=rules.step_size,
                min_notional=rules.min_notional,
                min_qty=rules.min_qty,
                max_qty=rules.max_qty,
                min_price=rules.min_price,
                max_price=rules.max_price if rules.max_price is not None else Decimal(1_000_000),
                touch_size=walk.size,
                step_bps=walk.step_bps,
                spread_ticks=walk.spread_ticks,
            )
        )
    return SimulatorConfig(
        seed=seed,
        symbols=tuple(specs),
        balances={str(asset): amount for asset, amount in DEFAULT_BALANCES.items()},
    )


def standalone_config(seed: int) -> SimulatorConfig:
    """``tradectl simulator`` without ``--config``: every symbol of the built-in catalogue (the
    example strategies trade BTCUSDT and PRES-YES), with its balances and a live market."""
    from engine.venues.paper import DEFAULT_RULES

    return simulator_config(tuple(sorted(DEFAULT_RULES)), seed=seed)
