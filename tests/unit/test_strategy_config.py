from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from engine.exceptions import ConfigError
from engine.strategy_config import DisconnectPolicy, load_strategy_config
from strategies.base import DecisionMode

REPO = Path(__file__).resolve().parents[2]

VALID = """
[[strategy]]
id = "sma-btc"
kind = "sma_cross"
symbols = ["BTCUSDT"]
bar_interval = "1m"
account = "main"
[strategy.params]
fast = 3
slow = 8
qty = 0.001
[strategy.limits]
max_position = "0.01"
max_quote_age = "2s"

[[strategy]]
id = "fv"
kind = "fair_value"
symbols = ["A", "B"]
decision_window = "5s"
[strategy.params]
fair = "0.5"
"fair.B" = 0.25
edge = 0
qty = 10
max_inventory = 100
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "strategies.toml"
    path.write_text(text)
    return path


def test_loads_a_valid_file(tmp_path: Path) -> None:
    sma, fv = load_strategy_config(write(tmp_path, VALID))
    assert sma.strategy_id == "sma-btc"
    assert sma.params == {"fast": "3", "slow": "8", "qty": "0.001"}
    assert sma.limits.max_position == Decimal("0.01")
    assert sma.limits.max_order_qty is None
    assert sma.limits.max_quote_age == timedelta(seconds=2)
    assert sma.bar_interval == timedelta(minutes=1)
    assert sma.bar_interval_name == "1m"
    assert sma.account == "main"
    assert fv.decision_window == timedelta(seconds=5)
    assert fv.bar_interval is None
    hosted = fv.hosted()
    assert hosted.strategy.mode is DecisionMode.QUOTE
    assert hosted.strategy.symbols == ("A", "B")
    assert hosted.decision_window == timedelta(seconds=5)


def test_assumed_costs_are_optional_basis_points_of_zero_or_more(tmp_path: Path) -> None:
    costs = 'account = "main"\nassumed_fee_bps = 0\nassumed_slippage_bps = "2.5"\n'
    sma, fv = load_strategy_config(write(tmp_path, VALID.replace('account = "main"\n', costs)))
    assert sma.assumed_fee_bps == 0
    assert sma.assumed_slippage_bps == Decimal("2.5")
    assert fv.assumed_fee_bps is None
    assert fv.assumed_slippage_bps is None
    negative = VALID.replace('account = "main"\n', "assumed_fee_bps = -1\n")
    assert "field 'assumed_fee_bps': must be zero or more" in error_for(tmp_path, negative)


def test_the_shipped_example_config_is_valid() -> None:
    specs = load_strategy_config(REPO / "strategies" / "example.toml")
    assert {s.kind for s in specs} == {"sma_cross", "fair_value"}


def error_for(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_strategy_config(path)
    message = str(info.value)
    assert message.startswith(str(path))
    return message


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "qty = 0.001",
            'qty = "lots"',
            "strategy 'sma-btc': field 'params.qty': must be a decimal",
        ),
        ("slow = 8", "slow = 2", "strategy 'sma-btc': field 'params.slow': must be greater"),
        ("fast = 3", "fats = 3", "strategy 'sma-btc': field 'params.fats': unknown param"),
        (
            'kind = "fair_value"',
            'kind = "fairvalue"',
            "strategy 'fv': field 'kind': unknown strategy",
        ),
        ('max_position = "0.01"', 'max_position = "-1"', "field 'limits.max_position': must be a"),
        ('max_quote_age = "2s"', 'max_quote_age = "2 weeks"', "field 'limits.max_quote_age'"),
        ('max_quote_age = "2s"', 'max_qoute_age = "2s"', "field 'limits.max_qoute_age': unknown"),
        ('symbols = ["A", "B"]', "symbols = []", "strategy 'fv': field 'symbols'"),
        ('symbols = ["A", "B"]', 'symbols = ["A", "A"]', "strategy 'fv': field 'symbols': symbols"),
        ('bar_interval = "1m"\n', "", "strategy 'sma-btc': field 'bar_interval': required"),
        ('id = "fv"', 'id = "sma-btc"', "strategy 'sma-btc': field 'id': the id is used"),
        ('"fair.B" = 0.25', '"fair.B" = 1.25', "strategy 'fv': field 'params.fair.B': must be <"),
    ],
)
def test_errors_name_the_file_strategy_and_field(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    assert old in VALID
    assert expected in error_for(tmp_path, VALID.replace(old, new, 1))


def test_a_strategy_without_id_is_named_by_position(tmp_path: Path) -> None:
    message = error_for(tmp_path, VALID.replace('id = "fv"\n', ""))
    assert "strategy #2: field 'id': Field required" in message


def test_bad_toml_and_missing_file_are_config_errors(tmp_path: Path) -> None:
    assert "not valid TOML" in error_for(tmp_path, "[[strategy]\n")
    assert "field 'strategy'" in error_for(tmp_path, "")
    with pytest.raises(ConfigError, match="cannot read strategy config"):
        load_strategy_config(tmp_path / "missing.toml")


def test_on_disconnect_is_keep_unless_cancel_is_asked_for(tmp_path: Path) -> None:
    sma, fv = load_strategy_config(
        write(
            tmp_path,
            VALID.replace('account = "main"', 'account = "main"\non_disconnect = "cancel"'),
        )
    )
    assert sma.on_disconnect is DisconnectPolicy.CANCEL
    assert fv.on_disconnect is DisconnectPolicy.KEEP
    message = error_for(tmp_path, VALID.replace('account = "main"', 'on_disconnect = "drop"'))
    assert "strategy 'sma-btc': field 'on_disconnect'" in message
