"""The strategy SDK in process: kinds by module path, typed params whose errors name the field,
``tradectl strategies``, ``tradectl new-strategy`` (its generated test passes), the config hash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.exceptions import ConfigError
from engine.strategy_config import parse_strategy_config
from strategies.base import ParamError
from strategies.registry import UnknownKind, create_strategy, known_kinds, resolve
from strategies.testing import StrategyHarness, buys, only_holds, sells
from tests.helpers import ROOT

USER_MODULE = '''
from decimal import Decimal
from pydantic import BaseModel, Field
from engine.domain.intents import Hold
from strategies.base import DecisionMode


class Params(BaseModel):
    qty: Decimal = Field(Decimal("1"), gt=0)
    lookback: int = Field(5, ge=2, le=50)


class Waits:
    """Never trades."""

    Params = Params
    mode = DecisionMode.BAR

    def __init__(self, strategy_id, symbols, params):
        self.strategy_id, self.symbols, self.params = strategy_id, tuple(symbols), params
        self.bar_history = params.lookback

    def decide(self, snapshot):
        return Hold(key=snapshot.key(self.symbols[0], None), reason="wait", md_ts=snapshot.md_ts)
'''


@pytest.fixture
def user_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    # a module name per test: a module once imported stays in sys.modules
    name = f"user_sdk_{uuid.uuid4().hex[:12]}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"{name}:Waits"


def entry(kind: str, **params: object) -> dict[str, object]:
    return {
        "strategy": [
            {
                "id": "user-1",
                "kind": kind,
                "symbols": ["BTCUSDT"],
                "bar_interval": "1m",
                "params": params,
            }
        ]
    }


def test_a_module_path_kind_builds_with_its_declared_defaults(user_kind: str) -> None:
    (spec,) = parse_strategy_config(entry(user_kind), source=Path("s.toml"))
    hosted = spec.hosted()
    assert hosted.strategy.params.lookback == 5  # type: ignore[attr-defined]
    assert hosted.version is not None
    assert hosted.version.startswith("sha256:")
    assert hosted.config_hash == spec.config_hash


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"qty": "-1"}, "field 'params.qty': must be greater than 0"),
        ({"lookback": "x"}, "field 'params.lookback': must be a whole number"),
        ({"lookback": 99}, "field 'params.lookback': must be less than or equal to 50"),
        ({"lokback": 3}, "field 'params.lokback': unknown param"),
    ],
)
def test_a_bad_param_names_the_field(
    user_kind: str, params: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_strategy_config(entry(user_kind, **params), source=Path("s.toml"))
    assert f"s.toml: strategy 'user-1': {message}" in str(info.value)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("no_such_pkg.mod:Thing", "cannot import 'no_such_pkg.mod'"),
        ("strategies.sma_cross:Nope", "'strategies.sma_cross' has no 'Nope'"),
        ("sma_crosss", "unknown strategy kind 'sma_crosss'"),
    ],
)
def test_an_unknown_kind_is_one_line(kind: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_strategy_config(entry(kind), source=Path("s.toml"))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_built_in_params_have_defaults_and_bounds() -> None:
    built = create_strategy("sma_cross", "s", ["BTCUSDT"], {})
    assert (built.fast, built.slow) == (10, 20)  # type: ignore[attr-defined]
    with pytest.raises(ParamError) as info:
        create_strategy("sma_cross", "s", ["BTCUSDT"], {"fast": "0"})
    assert info.value.field == "fast"
    with pytest.raises(UnknownKind):
        resolve("nope")


def test_the_config_hash_follows_the_config_not_its_key_order() -> None:
    def digest(raw: dict[str, object]) -> str | None:
        return parse_strategy_config(raw, source=Path("s.toml"))[0].config_hash

    base = entry("sma_cross", fast=3, slow=8)
    reordered = entry("sma_cross", slow=8, fast=3)
    changed = entry("sma_cross", fast=3, slow=9)
    assert digest(base) == digest(reordered) != digest(changed)


def test_tradectl_strategies_lists_every_kind_with_params_and_defaults(
    user_kind: str, tmp_path: Path
) -> None:
    config = tmp_path / "s.toml"
    config.write_text(f'[[strategy]]\nid = "u"\nkind = "{user_kind}"\nsymbols = ["BTCUSDT"]\n')
    runner = CliRunner()
    result = runner.invoke(app, ["strategies", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    kinds = {k["kind"]: k for k in json.loads(result.output)}
    assert {"sma_cross", "fair_value", "churn", user_kind} <= set(kinds)
    fast = kinds["sma_cross"]["params"][0]
    assert (fast["name"], fast["default"], fast["bounds"]) == ("fast", "10", [">= 1"])
    assert [(p["name"], p["default"]) for p in kinds[user_kind]["params"]] == [
        ("qty", "1"),
        ("lookback", "5"),
    ]
    table = runner.invoke(app, ["strategies", "--config", str(config)])
    assert table.exit_code == 0, table.output
    assert user_kind in table.output
    assert "lookback" in table.output


def test_tradectl_strategies_fails_on_a_kind_that_does_not_import(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["strategies", "--config", str(tmp_path / "none.toml"), "--kind", "nope_pkg:X"]
    )
    assert result.exit_code == 1
    assert "cannot import 'nope_pkg'" in result.output


def test_the_backtest_runs_a_built_in_on_its_defaults_and_names_a_bad_param() -> None:
    data = str(ROOT / "tests" / "resources" / "ohlcv" / "btcusdt_1d.csv")
    runner = CliRunner()
    result = runner.invoke(app, ["backtest", "--data", data, "--strategy", "sma_cross"])
    assert result.exit_code == 0, result.output
    assert "params          (defaults)" in result.output
    bad = runner.invoke(
        app, ["backtest", "--data", data, "--strategy", "sma_cross", "--param", "slow=5"]
    )
    assert bad.exit_code != 0
    assert "slow: must be greater than fast (10)" in bad.output


def test_new_strategy_scaffolds_a_strategy_whose_test_passes(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["new-strategy", "mean_revert", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert {p.name for p in tmp_path.iterdir()} >= {
        "mean_revert.py",
        "test_mean_revert.py",
        "mean_revert.toml",
    }
    assert 'kind = "mean_revert:MeanRevert"' in (tmp_path / "mean_revert.toml").read_text()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_mean_revert.py"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout

    again = runner.invoke(app, ["new-strategy", "mean_revert", "--dir", str(tmp_path)])
    assert again.exit_code == 2
    assert "not overwriting" in again.output
    assert runner.invoke(app, ["new-strategy", "Bad-Name"]).exit_code == 2


def test_an_entry_point_registers_a_short_name(
    user_kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an installed distribution, as pip leaves it: importlib.metadata finds it on sys.path
    dist = tmp_path / "user_strategies-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: user-strategies\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[tradectl.strategies]\nwaits = {user_kind}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "waits" in known_kinds()
    kind = resolve("waits")
    assert (kind.origin, [p.name for p in kind.params()]) == ("entry point", ["qty", "lookback"])
    (spec,) = parse_strategy_config(entry("waits", lookback=7), source=Path("s.toml"))
    assert spec.hosted().strategy.params.lookback == 7  # type: ignore[attr-defined]


def test_the_harness_feeds_quotes_and_applies_fills() -> None:
    strategy = create_strategy("fair_value", "fv", ["PRES-YES"], {"fair": "0.55", "qty": "5"})
    h = StrategyHarness(strategy)
    assert only_holds(h.quote(bid="0.50", ask="0.54"))  # inside the edge
    (buy,) = buys(h.quote(bid="0.50", ask="0.52", ask_size=100))
    assert (buy.quantity, buy.limit_price) == (Decimal(5), Decimal("0.52"))
    h.fill(buy)
    assert h.position() == Decimal(5)
    (sell,) = sells(h.quote(bid="0.60", ask="0.61", bid_size=100))
    assert sell.quantity == Decimal(5)
    assert h.bar(close="0.6") == ()  # a quote strategy does not decide on bars
