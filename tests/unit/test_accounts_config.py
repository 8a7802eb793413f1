"""Account rows as configuration (engine/accounts.py): references only, the account's settings
built from the process's, and one line naming the account and field for a bad row."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.accounts import (
    AccountConfig,
    account_settings,
    account_trading_config,
    check_account,
    load_accounts_file,
)
from engine.config import KalshiEnvironment, VenueKind, load_settings
from engine.exceptions import ConfigError
from tests.helpers import ROOT


def binance(**kw: object) -> AccountConfig:
    values: dict[str, object] = {
        "account": "sub-1",
        "venue": VenueKind.BINANCE,
        "environment": "testnet",
        "credentials": {"binance_api_key": "env:SUB1_KEY", "binance_api_secret": "env:SUB1_SEC"},
    }
    values.update(kw)
    return AccountConfig(**values)  # type: ignore[arg-type]


def test_a_credential_that_is_not_a_reference_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as raised:
        check_account(binance(credentials={"binance_api_key": "AbCdEfsecretvalue"}))
    assert "reference" in str(raised.value)
    assert "AbCdEfsecretvalue" not in str(raised.value)


def test_a_credential_of_another_venue_is_refused() -> None:
    with pytest.raises(ConfigError, match="kalshi_key_id"):
        check_account(binance(credentials={"kalshi_key_id": "env:K"}))


def test_process_settings_and_unknown_settings_cannot_be_set_per_account() -> None:
    with pytest.raises(ConfigError, match="metrics_port"):
        check_account(binance(settings={"metrics_port": 9100}))
    with pytest.raises(ConfigError, match="unknown setting"):
        check_account(binance(settings={"lease_tll_s": 3}))


def test_an_environment_the_venue_lacks_is_refused() -> None:
    with pytest.raises(ConfigError, match="testnet, production"):
        check_account(binance(environment="demo"))


def test_account_settings_read_the_referenced_secrets_and_apply_the_overrides(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SUB1_KEY", "the-key")
    secret = tmp_path / "secret"
    secret.write_text("the-secret\n")
    config = binance(
        credentials={"binance_api_key": "env:SUB1_KEY", "binance_api_secret": f"file:{secret}"},
        settings={"lease_ttl_s": 4, "binance_rest_url": "http://127.0.0.1:1"},
    )
    settings = account_settings(load_settings(account="other"), config)
    assert settings.account == "sub-1"
    assert settings.venue is VenueKind.BINANCE
    assert settings.lease_ttl_s == 4
    assert settings.binance_rest_url == "http://127.0.0.1:1"
    assert settings.binance_api_key is not None
    assert settings.binance_api_key.get_secret_value() == "the-key"
    assert settings.binance_api_secret is not None
    assert settings.binance_api_secret.get_secret_value() == "the-secret"


def test_a_missing_environment_variable_names_the_account_and_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SUB1_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"account 'sub-1'.*\$SUB1_KEY"):
        account_settings(load_settings(), binance())


def test_kalshi_production_is_chosen_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    config = AccountConfig(account="k1", venue=VenueKind.KALSHI, environment="production")
    assert account_settings(load_settings(), config).kalshi_environment is (
        KalshiEnvironment.PRODUCTION
    )


def test_limits_overrides_apply_to_the_strategies_file() -> None:
    config = binance(limits={"max_order_qty": "0.5"})
    settings = load_settings(strategies_file=ROOT / "strategies" / "example.toml")
    limits = account_trading_config(settings, config).account_limits
    assert str(limits.max_order_qty) == "0.5"


def test_an_accounts_file_is_checked_like_the_cli(tmp_path: Path) -> None:
    good = tmp_path / "accounts.toml"
    good.write_text(
        '[accounts.a1]\nvenue = "paper"\n\n'
        '[accounts.b1]\nvenue = "binance"\nenvironment = "testnet"\nenabled = false\n'
        '[accounts.b1.credentials]\nbinance_api_key = "env:B1_KEY"\n'
    )
    loaded = load_accounts_file(good)
    assert [(a.account, a.venue.value, a.enabled) for a in loaded] == [
        ("a1", "paper", True),
        ("b1", "binance", False),
    ]
    bad = tmp_path / "bad.toml"
    bad.write_text('[accounts.x]\nvenue = "nasdaq"\n')
    with pytest.raises(ConfigError, match=r"accounts\.x: venue must be one of"):
        load_accounts_file(bad)
