"""Settings: defaults need no environment; a bad value names the variable; secrets stay secret."""

from __future__ import annotations

import pytest

from engine.config import Settings, VenueKind, load_settings
from engine.exceptions import ConfigError


def test_defaults_need_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    settings = load_settings()
    assert settings.database_url is None
    assert settings.venue is VenueKind.SIMULATOR
    assert settings.order_id_prefix == "tctl"


def test_a_bad_value_names_the_variable_and_what_is_expected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRADECTL_VENUE", "kraken")
    monkeypatch.setenv("TRADECTL_LEASE_TTL_S", "-3")
    with pytest.raises(ConfigError) as err:
        load_settings()
    message = str(err.value)
    assert (
        "TRADECTL_VENUE: Input should be 'paper', 'simulator', 'binance', 'kalshi' or "
        "'kalshi_simulator'"
    ) in message
    assert "TRADECTL_LEASE_TTL_S: Input should be greater than 1" in message


def test_a_bad_order_id_prefix_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADECTL_ORDER_ID_PREFIX", "has space")
    with pytest.raises(ConfigError, match="TRADECTL_ORDER_ID_PREFIX"):
        load_settings()


def test_secrets_are_never_echoed_in_errors_or_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:hunter2@db:5432/x")
    monkeypatch.setenv("TRADECTL_BINANCE_API_SECRET", "s3cr3t-value")
    monkeypatch.setenv("TRADECTL_SEED", "not-a-number")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "hunter2" not in str(err.value)
    assert "s3cr3t-value" not in str(err.value)
    monkeypatch.setenv("TRADECTL_SEED", "1")
    settings = Settings()
    assert "hunter2" not in repr(settings)
    assert "s3cr3t-value" not in repr(settings)
