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
    "breaker_failure_threshold": "failures in a row that open a breaker (TOML [breakers] wins)",
    "breaker_recovery_s": "seconds an open breaker waits for probes (TOML [breakers] wins)",
    "breaker_success_threshold": "probe successes that close a breaker (TOML [breakers] wins)",
    "disconnect_after_s": "a stream down this long disconnects (TOML [connection] wins)",
    "metrics_port": "serve Prometheus metrics on 127.0.0.1:PORT",
    "log_format": "console, or json for machines",
    "log_level": "DEBUG, INFO, WARNING or ERROR",
    "binance_rest_url": "Binance REST endpoint (default: testnet)",
    "binance_ws_api_url": "Binance WebSocket API endpoint (default: testnet)",
    "binance_stream_url": "Binance market/user stream endpoint (default: testnet)",
    "binance_api_key": "Binance API key (secret: never logged)",
    "binance_api_secret": "Binance API secret (secret: never logged)",
    "stage": "backtest, paper, small_live or live (a production venue needs small_live/live)",
    "capital_fraction": "every order's size times this (default: small_live 0.1, others 1)",
    "confirm_live": "yes: start live trading on a production venue (or run --i-understand)",
    "paper_feed": "paper venue market data: random, binance, kalshi or replay:PATH",
    "paper_latency_ms": "paper fills: mean order latency (seeded exponential draws)",
    "paper_slippage_bps": "paper fills: a taking order pays this much worse than the touch",
    "paper_participation": "paper fills: share of each public trade a resting order may take",
    "paper_replay_speed": "replay:PATH plays the recording this many times faster",
    "record_market_data": "write received market data to DIR (JSONL per venue, symbol, day)",
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
