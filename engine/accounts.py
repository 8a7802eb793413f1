"""Accounts as configuration data: one row of ``accounts`` turned into the settings and the
trading config of that account's engine.

A row names the venue, the environment, where its credentials are (references, never the
secrets: ``env:NAME`` reads an environment variable of the engine process, ``file:/path`` a
file, when the engine starts the account), the strategies file and overrides of settings and of
the strategies file's ``[account.limits]``. A bad row fails that account alone, with one line
naming the account and the field.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from engine.config import KalshiEnvironment, Settings, VenueKind, load_settings
from engine.exceptions import ConfigError
from engine.strategy_config import TradingConfig, parse_trading_config

ACCOUNT_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: the secret settings an account may name a reference for, and the venues that use them
CREDENTIALS: dict[str, tuple[VenueKind, ...]] = {
    "binance_api_key": (VenueKind.BINANCE,),
    "binance_api_secret": (VenueKind.BINANCE,),
    "kalshi_key_id": (VenueKind.KALSHI,),
    "kalshi_private_key": (VenueKind.KALSHI,),
}
#: settings an account must not override: they belong to the process (its database, its ops
#: port, its logs) or are the account's own columns
PROCESS_SETTINGS = frozenset(
    {
        "database_url",
        "migrate_database_url",
        "owner_role",
        "engine_role",
        "readonly_role",
        "metrics_port",
        "metrics_host",
        "log_format",
        "log_level",
        "account",
        "venue",
        "strategies_file",
        "alert_urls",
        *CREDENTIALS,
        "kalshi_private_key_path",
    }
)
#: the environments each venue knows; the first is the default
ENVIRONMENTS: dict[VenueKind, tuple[str, ...]] = {
    VenueKind.PAPER: ("paper",),
    VenueKind.SIMULATOR: ("simulator",),
    VenueKind.KALSHI_SIMULATOR: ("simulator",),
    VenueKind.BINANCE: ("testnet", "production"),
    VenueKind.KALSHI: ("demo", "production"),
}
_BINANCE_PRODUCTION = {
    "binance_rest_url": "https://api.binance.com",
    "binance_ws_api_url": "wss://ws-api.binance.com:443/ws-api/v3",
    "binance_stream_url": "wss://stream.binance.com:9443",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountConfig:
    """One row of ``accounts``."""

    account: str
    venue: VenueKind
    environment: str
    credentials: Mapping[str, str] = field(default_factory=dict)
    strategies_file: Path | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    limits: Mapping[str, Any] = field(default_factory=dict)
    enabled: bool = True
    created_at: datetime | None = None
    updated_at: datetime | None = None


def check_account(config: AccountConfig) -> AccountConfig:
    """The row as it may be stored, or a ConfigError naming the field: references only, known
    settings only, an environment the venue has."""
    where = f"account {config.account!r}"
    if not ACCOUNT_NAME.fullmatch(config.account):
        raise ConfigError(f"{where}: an account id is 1-64 letters, digits, '-' or '_'")
    environments = ENVIRONMENTS[config.venue]
    if config.environment not in environments:
        raise ConfigError(
            f"{where}: environment {config.environment!r} is not one of "
            f"{', '.join(environments)} for venue {config.venue.value}"
        )
    for name, ref in config.credentials.items():
        if name not in CREDENTIALS or config.venue not in CREDENTIALS[name]:
            usable = [n for n, venues in CREDENTIALS.items() if config.venue in venues]
            raise ConfigError(
                f"{where}: credential {name!r} is not one venue {config.venue.value} uses "
                f"({', '.join(usable) or 'none'})"
            )
        kind, _, target = str(ref).partition(":")
        if kind not in ("env", "file") or not target:
            # never echo the value: someone may have pasted the secret itself
            raise ConfigError(
                f"{where}: credential {name} must be a reference, 'env:VARIABLE' or "
                "'file:/path', never the secret itself"
            )
    unknown = sorted(set(config.settings) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}")
    forbidden = sorted(set(config.settings) & PROCESS_SETTINGS)
    if forbidden:
        raise ConfigError(
            f"{where}: setting(s) {', '.join(forbidden)} cannot be set per account (the "
            "process's own, or a column or credential of the account)"
        )
    return config


def _resolve(account: str, name: str, ref: str) -> SecretStr:
    kind, _, target = ref.partition(":")
    if kind == "env":
        value = os.environ.get(target)
        if not value:
            raise ConfigError(
                f"account {account!r}: credential {name} names ${target}, which is not set in "
                "this engine's environment"
            )
        return SecretStr(value)
    try:
        return SecretStr(Path(target).read_text(encoding="utf-8").strip())
    except OSError as exc:
        raise ConfigError(
            f"account {account!r}: credential {name} names file {target}: {exc.strerror}"
        ) from None


def account_settings(base: Settings, config: AccountConfig) -> Settings:
    """The engine settings of ``config``: the process's, with the account's venue, environment,
    credentials (read now) and overrides."""
    check_account(config)
    values: dict[str, Any] = dict(base.model_dump())
    if config.venue is VenueKind.BINANCE and config.environment == "production":
        values.update(_BINANCE_PRODUCTION)
    if config.venue is VenueKind.KALSHI:
        values["kalshi_environment"] = KalshiEnvironment(config.environment)
    values.update(config.settings)
    values.update(account=config.account, venue=config.venue)
    if config.strategies_file is not None:
        values["strategies_file"] = config.strategies_file
    for name, ref in config.credentials.items():
        values[name] = _resolve(config.account, name, ref)
    try:
        return load_settings(**values)
    except ConfigError as exc:
        raise ConfigError(f"account {config.account!r}: {exc}") from None


def account_trading_config(settings: Settings, config: AccountConfig) -> TradingConfig:
    """The strategies file with the account's ``[account.limits]`` overrides applied."""
    path = settings.strategies_file
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"account {config.account!r}: {path}: cannot read: {exc}") from None
    if config.limits:
        section = raw.setdefault("account", {})
        section["limits"] = {**section.get("limits", {}), **config.limits}
    return parse_trading_config(raw, source=path)


def load_accounts_file(path: Path) -> list[AccountConfig]:
    """A TOML file of ``[accounts.<id>]`` tables (venue, environment, credentials,
    strategies_file, settings, limits, enabled), each checked like ``tradectl accounts add``."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the accounts file: {exc}") from None
    tables = raw.get("accounts")
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"{path}: expected [accounts.<id>] tables")
    out = []
    allowed = {"venue", "environment", "credentials", "strategies_file", "settings", "limits",
               "enabled"}  # fmt: skip
    for account, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: accounts.{account} must be a table")
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise ConfigError(f"{path}: accounts.{account}: unknown key(s) {', '.join(unknown)}")
        try:
            venue = VenueKind(table.get("venue", ""))
        except ValueError:
            raise ConfigError(
                f"{path}: accounts.{account}: venue must be one of "
                f"{', '.join(v.value for v in VenueKind)}"
            ) from None
        strategies = table.get("strategies_file")
        out.append(
            check_account(
                AccountConfig(
                    account=str(account),
                    venue=venue,
                    environment=str(table.get("environment", ENVIRONMENTS[venue][0])),
                    credentials=dict(table.get("credentials", {})),
                    strategies_file=None if strategies is None else Path(strategies),
                    settings=dict(table.get("settings", {})),
                    limits=dict(table.get("limits", {})),
                    enabled=bool(table.get("enabled", True)),
                )
            )
        )
    return out
