"""``[breakers]`` and ``[connection]`` in the strategies file, resolved against the settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import load_settings
from engine.domain.breaker import BreakerConfig
from engine.exceptions import ConfigError
from engine.protection_config import EndpointClass, VenueProtection, protection_from_settings
from engine.strategy_config import load_trading_config

STRATEGY = """
[[strategy]]
id = "fv"
kind = "fair_value"
symbols = ["A"]
[strategy.params]
fair = "0.5"
edge = 0
qty = 10
max_inventory = 100
"""

SETTINGS = load_settings(
    breaker_failure_threshold=7,
    breaker_recovery_s=12.5,
    breaker_success_threshold=3,
    disconnect_after_s=45,
)


def resolved(tmp_path: Path, text: str) -> VenueProtection:
    path = tmp_path / "strategies.toml"
    path.write_text(STRATEGY + text)
    return load_trading_config(path).protection.resolve(SETTINGS)


def error_for(tmp_path: Path, text: str) -> str:
    path = tmp_path / "strategies.toml"
    path.write_text(STRATEGY + text)
    with pytest.raises(ConfigError) as info:
        load_trading_config(path)
    return str(info.value)


def test_without_the_tables_every_breaker_and_the_loss_time_come_from_the_settings(
    tmp_path: Path,
) -> None:
    protection = resolved(tmp_path, "")
    assert protection == protection_from_settings(SETTINGS)
    for cls in EndpointClass:
        assert protection.breakers[cls] == BreakerConfig(7, 12.5, 3)
    assert protection.disconnect_after_s == 45


def test_a_class_table_overrides_the_breakers_table_field_by_field(tmp_path: Path) -> None:
    protection = resolved(
        tmp_path,
        """
[breakers]
failure_threshold = 4
recovery_timeout = "1m"
[breakers.orders]
failure_threshold = 2
success_threshold = 1
[breakers.streams]
recovery_timeout = "5s"
[connection]
disconnect_after = "10s"
""",
    )
    assert protection.breakers[EndpointClass.ORDERS] == BreakerConfig(2, 60.0, 1)
    assert protection.breakers[EndpointClass.READS] == BreakerConfig(4, 60.0, 3)
    assert protection.breakers[EndpointClass.STREAMS] == BreakerConfig(4, 5.0, 3)
    assert protection.disconnect_after_s == 10


@pytest.mark.parametrize(
    ("text", "field", "expected"),
    [
        ("[breakers]\nfailure_threshold = 0", "breakers.failure_threshold", "greater than"),
        ("[breakers.reads]\nrecovery_timeout = 30", "breakers.reads.recovery_timeout", "'5s'"),
        ("[breakers.orders]\nsuccess_threshold = 'x'", "breakers.orders.success_threshold", ""),
        ("[breakers.fills]\nfailure_threshold = 1", "breakers.fills", "unknown field"),
        ("[connection]\ndisconnect_after = '0s'", "connection.disconnect_after", "positive"),
        ("[connection]\nlost_after = '5s'", "connection.lost_after", "unknown field"),
    ],
)
def test_a_bad_protection_field_is_named(
    tmp_path: Path, text: str, field: str, expected: str
) -> None:
    message = error_for(tmp_path, text)
    assert f"field {field!r}" in message
    assert expected in message
