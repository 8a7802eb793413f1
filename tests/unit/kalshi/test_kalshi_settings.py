"""TRADECTL_VENUE=kalshi: demo unless production is named, keys from the environment, and a
missing key named (never shown)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from engine.config import load_settings
from engine.exceptions import ConfigError
from engine.venues.kalshi import DEMO_REST_URL, PRODUCTION_REST_URL, KalshiVenue
from engine.venues.kalshi.session import kalshi_config


def test_kalshi_trades_the_demo_environment_unless_production_is_asked_for(
    key_pair: tuple[rsa.RSAPrivateKey, str],
) -> None:
    settings = load_settings(venue="kalshi", kalshi_key_id="kid", kalshi_private_key=key_pair[1])
    assert kalshi_config(settings).rest_url == DEMO_REST_URL

    live = load_settings(
        venue="kalshi",
        kalshi_key_id="kid",
        kalshi_private_key=key_pair[1],
        kalshi_environment="production",
    )
    assert kalshi_config(live).rest_url == PRODUCTION_REST_URL


def test_the_private_key_may_come_from_a_pem_file(
    tmp_path: Path, key_pair: tuple[rsa.RSAPrivateKey, str]
) -> None:
    pem = tmp_path / "kalshi.pem"
    pem.write_text(key_pair[1])
    settings = load_settings(venue="kalshi", kalshi_key_id="kid", kalshi_private_key_path=pem)
    venue = KalshiVenue(kalshi_config(settings))
    assert venue.config.private_key_path == pem


def test_a_missing_key_is_a_config_error_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="TRADECTL_KALSHI_KEY_ID"):
        kalshi_config(load_settings(venue="kalshi"))
    with pytest.raises(ConfigError, match="TRADECTL_KALSHI_PRIVATE_KEY"):
        kalshi_config(load_settings(venue="kalshi", kalshi_key_id="kid"))


def test_a_bad_pem_is_refused_without_echoing_it() -> None:
    secret = "-----BEGIN PRIVATE KEY-----\nnot-a-key-at-all\n-----END PRIVATE KEY-----"
    settings = load_settings(venue="kalshi", kalshi_key_id="kid", kalshi_private_key=secret)
    with pytest.raises(ConfigError) as raised:
        KalshiVenue(kalshi_config(settings))
    assert "not-a-key-at-all" not in str(raised.value)
    assert "not-a-key-at-all" not in repr(settings)


def test_another_kalshi_protocol_server_is_named_by_both_urls(
    key_pair: tuple[rsa.RSAPrivateKey, str],
) -> None:
    urls = {
        "kalshi_rest_url": "http://127.0.0.1:9/trade-api/v2",
        "kalshi_ws_url": "ws://127.0.0.1:9/trade-api/ws/v2",
    }
    config = kalshi_config(
        load_settings(venue="kalshi", kalshi_key_id="kid", kalshi_private_key=key_pair[1], **urls)
    )
    assert (config.rest_url, config.ws_url) == tuple(urls.values())
    with pytest.raises(ConfigError, match="TRADECTL_KALSHI_WS_URL"):
        kalshi_config(
            load_settings(
                venue="kalshi",
                kalshi_key_id="kid",
                kalshi_private_key=key_pair[1],
                kalshi_rest_url=urls["kalshi_rest_url"],
            )
        )
