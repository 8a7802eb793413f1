"""Settings (pydantic-settings). ``DATABASE_URL`` plus ``TRADECTL_*`` environment variables.

Nothing is required: with no environment at all the engine runs on an embedded Postgres, the
built-in exchange simulator and the example strategies, with paper money.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.domain.ids import validate_prefix
from engine.domain.stage import Stage
from engine.exceptions import ConfigError
from engine.ledger.roles import RoleNames, check_role_name


class VenueKind(StrEnum):
    PAPER = "paper"  #: in-process paper venue (no sockets)
    SIMULATOR = "simulator"  #: the built-in Binance-protocol simulator on loopback, via the adapter
    BINANCE = "binance"  #: a real Binance endpoint (testnet or production)
    KALSHI = "kalshi"  #: Kalshi's Trade API v2 (demo unless TRADECTL_KALSHI_ENVIRONMENT=production)
    KALSHI_SIMULATOR = "kalshi_simulator"  #: the built-in Kalshi-protocol simulator on loopback


class KalshiEnvironment(StrEnum):
    DEMO = "demo"
    PRODUCTION = "production"


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


def _account_name(v: str) -> str:
    if not v or len(v) > 64 or not v.replace("-", "").replace("_", "").isalnum():
        raise ValueError("expected 1-64 letters, digits, '-' or '_'")
    return v


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TRADECTL_", extra="ignore", validate_default=True, frozen=True
    )

    #: Postgres URL; unset means an embedded Postgres in ``data_dir``. Kept secret: it may
    #: carry a password.
    database_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "TRADECTL_DATABASE_URL")
    )
    #: the owner role's URL for ``tradectl migrate`` (migrations and grants); unset: DATABASE_URL
    migrate_database_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("TRADECTL_MIGRATE_DATABASE_URL")
    )
    #: the database roles (engine/ledger/roles.py): the embedded Postgres creates them, and
    #: ``tradectl migrate`` grants the engine and read-only ones their privileges
    owner_role: str = "tradectl_owner"
    engine_role: str = "tradectl_engine"
    readonly_role: str = "tradectl_readonly"
    data_dir: Path = Path(".data")
    account: str = "paper"
    #: unset: this process trades TRADECTL_ACCOUNT alone. ``auto``: it is one engine of a pool
    #: sharing the enabled rows of ``accounts`` (engine/pool.py); ``a,b,c``: those accounts
    accounts: str | None = None
    #: the most accounts one pool engine runs at once
    max_accounts: int = Field(default=16, ge=1, le=1000)
    venue: VenueKind = VenueKind.SIMULATOR
    order_id_prefix: str = "tctl"
    strategies_file: Path = Path("strategies/example.toml")
    seed: int = 7

    status_interval_s: float = Field(default=5.0, gt=0)
    lease_ttl_s: float = Field(default=15.0, gt=1)
    #: operator requests and controls wake the engine by NOTIFY; this poll is the fallback
    operator_poll_s: float = Field(default=2.0, gt=0)
    reconcile_interval_s: float = Field(default=30.0, gt=0)
    #: how long an order the venue cannot find may still appear there (venue consistency window)
    consistency_window_s: float = Field(default=3.0, ge=0)
    #: how often unresolved (PENDING_SUBMIT / UNKNOWN / PENDING_CANCEL) orders are looked up
    resolve_interval_s: float = Field(default=1.0, gt=0)
    max_batch: int = Field(default=64, ge=1, le=1000)
    #: venue circuit breakers (per endpoint class: orders, reads, streams): this many failures
    #: in a row (5xx, timeouts, rate limits, dropped streams) open one; after the recovery time
    #: it lets probes through, and this many successes in a row close it again
    breaker_failure_threshold: int = Field(default=5, ge=1)
    breaker_recovery_s: float = Field(default=30.0, gt=0)
    breaker_success_threshold: int = Field(default=2, ge=1)
    #: a venue stream down this long puts the account in the ``disconnected`` state (no new
    #: orders; an incident; on its return each strategy's ``on_disconnect`` policy applies)
    disconnect_after_s: float = Field(default=30.0, gt=0)
    #: balance drift tolerated before the reconciler pauses and opens an incident
    balance_tolerance: str = "0.00000001"
    #: how long a balance drift must stay unchanged before it pauses (fills in flight settle)
    balance_settle_s: float = Field(default=10.0, ge=0)

    #: apprise URLs of the alert channels, comma or space separated (they carry tokens: secret);
    #: unset: alerts go to the log only
    alert_urls: SecretStr | None = None
    #: repeats of an alert (same level, kind and scope) within this are counted, not sent
    alert_cooldown_s: float = Field(default=300.0, ge=0)
    #: first and longest wait before a failed delivery is tried again
    alert_retry_s: float = Field(default=5.0, gt=0)
    alert_retry_max_s: float = Field(default=300.0, gt=0)
    #: the venue's user stream down this long is a CRITICAL alert
    alert_disconnect_s: float = Field(default=60.0, gt=0)
    #: an order UNKNOWN this long is a HIGH alert
    alert_unknown_s: float = Field(default=120.0, gt=0)
    #: an order filled this many bps worse than its limit price (a market order: its decision
    #: price) is a HIGH alert
    alert_slippage_bps: Decimal = Field(default=Decimal(50), gt=0, allow_inf_nan=False)

    #: serve /metrics, /healthz and /readyz on this port (unset: no ops HTTP server)
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    #: the address it listens on: loopback unless exposed on purpose (0.0.0.0 in compose)
    metrics_host: str = "127.0.0.1"
    log_format: LogFormat = LogFormat.CONSOLE
    log_level: str = "INFO"

    binance_rest_url: str = "https://testnet.binance.vision"
    binance_ws_api_url: str = "wss://ws-api.testnet.binance.vision/ws-api/v3"
    binance_stream_url: str = "wss://stream.testnet.binance.vision"
    binance_api_key: SecretStr | None = None
    binance_api_secret: SecretStr | None = None

    #: demo (separate keys, play money) unless production is asked for by name
    kalshi_environment: KalshiEnvironment = KalshiEnvironment.DEMO
    kalshi_key_id: SecretStr | None = None
    #: the RSA private key as PEM text, or a path to a PEM file (one of the two)
    kalshi_private_key: SecretStr | None = None
    kalshi_private_key_path: Path | None = None
    #: the Trade API's REST root and WebSocket URL instead of the environment's (another
    #: Kalshi-protocol server, e.g. ``tradectl simulator --protocol kalshi``); both or neither
    kalshi_rest_url: str | None = None
    kalshi_ws_url: str | None = None
    #: seconds the built-in Kalshi simulator hides a write from reads
    kalshi_read_lag_s: float = Field(default=0.5, ge=0)
    #: seconds after start at which the built-in Kalshi simulator settles its markets (YES or
    #: NO, by the seed); unset: they never settle
    kalshi_settle_after_s: float | None = Field(default=None, gt=0)

    # -- stages and paper trading (engine/live_guard.py, engine/venues/paper/feeds.py) ------
    #: backtest, paper, small_live or live; unset: paper, except on a production venue,
    #: where it must be named (small_live or live)
    stage: Stage | None = None
    #: every order's size is multiplied by this; unset: the stage's default (small_live 0.1,
    #: the others 1)
    capital_fraction: Decimal | None = Field(default=None, gt=0, le=1, allow_inf_nan=False)
    #: live trading on a production venue starts only with this set (or ``run --i-understand``)
    confirm_live: bool = False
    #: where the paper venue's market comes from: random, binance, kalshi or replay:PATH
    paper_feed: str = "random"
    #: the paper venue's fill model: mean order latency, slippage of taking orders, and the
    #: share of each public trade a resting order may fill; seeded by TRADECTL_SEED
    paper_latency_ms: Decimal = Field(default=Decimal(0), ge=0, allow_inf_nan=False)
    paper_slippage_bps: Decimal = Field(default=Decimal(0), ge=0, allow_inf_nan=False)
    paper_participation: Decimal = Field(default=Decimal("0.1"), gt=0, le=1, allow_inf_nan=False)
    #: replay:PATH plays the recording this many times faster than it was recorded
    paper_replay_speed: float = Field(default=1.0, gt=0)
    #: write the market data the engine receives to DIR (one JSONL per venue, symbol and day)
    record_market_data: Path | None = None

    @field_validator("order_id_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return validate_prefix(v)

    @field_validator("owner_role", "engine_role", "readonly_role")
    @classmethod
    def _role(cls, v: str) -> str:
        return check_role_name(v)

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        level = v.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("expected one of DEBUG, INFO, WARNING, ERROR")
        return level

    @field_validator("accounts")
    @classmethod
    def _accounts(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        v = v.strip()
        if v != "auto":
            for name in v.split(","):
                _account_name(name.strip())
        return v

    @field_validator("account")
    @classmethod
    def _account(cls, v: str) -> str:
        return _account_name(v)

    @property
    def roles(self) -> RoleNames:
        return RoleNames(
            owner=self.owner_role, engine=self.engine_role, readonly=self.readonly_role
        )

    @property
    def lease_ttl(self) -> timedelta:
        return timedelta(seconds=self.lease_ttl_s)

    @property
    def consistency_window(self) -> timedelta:
        return timedelta(seconds=self.consistency_window_s)


def _env_name(loc: tuple[Any, ...]) -> str:
    field = str(loc[0]) if loc else "?"
    if field == "database_url":
        return "DATABASE_URL"
    return f"TRADECTL_{field.upper()}"


def load_settings(**overrides: Any) -> Settings:
    """Read the environment; a bad value fails with the variable's name and what is expected."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            # never echo the input: it could be a secret
            problems.append(f"{_env_name(err['loc'])}: {err['msg']}")
        raise ConfigError("invalid settings:\n  " + "\n  ".join(problems)) from None
