"""The settings ``tradectl run`` reads, listed in ``tradectl run --help`` from :class:`Settings`
itself, so the list cannot fall behind the code."""

from __future__ import annotations

from pydantic import AliasChoices
from pydantic.fields import FieldInfo
from rich.console import Console
from rich.table import Table

from engine.config import Settings

#: one line each; a setting without one is still listed, with its default
MEANING: dict[str, str] = {
    "database_url": "Postgres URL; unset: an embedded Postgres in TRADECTL_DATA_DIR/pg",
    "data_dir": "where the embedded Postgres and the demo exchange keep their files",
    "account": "the account this engine trades (one engine per account)",
    "venue": "simulator (built-in, loopback), paper (in-process) or binance",
    "order_id_prefix": "marks our client order ids (1-12 letters/digits)",
    "strategies_file": "which strategies run, with their params and limits (TOML)",
    "seed": "seed of the simulated market",
    "status_interval_s": "seconds between status refreshes",
    "lease_ttl_s": "single-writer lease; a standby takes over after it expires",
    "operator_poll_s": "fallback poll of operator requests and controls (NOTIFY wakes at once)",
    "reconcile_interval_s": "seconds between periodic reconciliations",
    "consistency_window_s": "how long an order the venue cannot find may still appear",
    "resolve_interval_s": "seconds between lookups of orders whose outcome is unknown",
    "max_batch": "intents reserved in one ledger transaction",
    "balance_tolerance": "balance difference per asset the reconciler ignores",
    "balance_settle_s": "how long a balance drift must stay before it pauses trading",
    "breaker_failure_threshold": "venue failures in a row that open a circuit breaker",
    "breaker_recovery_s": "seconds an open breaker waits before it lets probes through",
    "breaker_success_threshold": "probe successes in a row that close a breaker again",
    "disconnect_after_s": "a venue stream down this long: account disconnected, no new orders",
    "metrics_port": "serve Prometheus metrics on 127.0.0.1:PORT",
    "log_format": "console, or json for machines",
    "log_level": "DEBUG, INFO, WARNING or ERROR",
    "binance_rest_url": "Binance REST endpoint (default: testnet)",
    "binance_ws_api_url": "Binance WebSocket API endpoint (default: testnet)",
    "binance_stream_url": "Binance market/user stream endpoint (default: testnet)",
    "binance_api_key": "Binance API key (secret: never logged)",
    "binance_api_secret": "Binance API secret (secret: never logged)",
}


def env_name(name: str, field: FieldInfo) -> str:
    alias = field.validation_alias
    if isinstance(alias, AliasChoices) and alias.choices and isinstance(alias.choices[0], str):
        return alias.choices[0]
    if isinstance(alias, str):
        return alias
    return f"TRADECTL_{name.upper()}"


def default_text(field: FieldInfo) -> str:
    default = field.get_default(call_default_factory=True)
    if default is None:
        return "unset"
    value = getattr(default, "value", default)  # an enum: its value
    return str(value)


def settings_table() -> Table:
    table = Table("variable", "default", "meaning", box=None, pad_edge=False)
    for name, field in Settings.model_fields.items():
        table.add_row(env_name(name, field), default_text(field), MEANING.get(name, ""))
    return table


def print_settings() -> None:
    console = Console()
    console.print("Settings (environment variables; none is required):")
    console.print(settings_table())
