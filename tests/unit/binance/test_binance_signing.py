from __future__ import annotations

import pytest
from pydantic import SecretStr

from engine.exceptions import ConfigError
from engine.venues.binance import sign_hmac
from engine.venues.binance.signing import (
    HmacSigner,
    ServerClock,
    encode_params,
    make_signer,
    ws_signature_payload,
)

from .conftest import API_SECRET, make_config

# rest-api.md, "SIGNED Endpoint Examples for POST /api/v3/order"
DOC_TOTAL_PARAMS = (
    "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
    "&recvWindow=5000&timestamp=1499827319559"
)
DOC_SIGNATURE = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
# Example 3: query string and body concatenated without "&"
DOC_MIXED = (
    "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC"
    "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
)
DOC_MIXED_SIGNATURE = "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77"


def test_documented_hmac_example_reproduces() -> None:
    assert sign_hmac(API_SECRET, DOC_TOTAL_PARAMS) == DOC_SIGNATURE


def test_documented_mixed_query_and_body_example_reproduces() -> None:
    assert sign_hmac(API_SECRET, DOC_MIXED) == DOC_MIXED_SIGNATURE


def test_encoded_documented_params_are_the_documented_payload() -> None:
    params = [
        ("symbol", "LTCBTC"),
        ("side", "BUY"),
        ("type", "LIMIT"),
        ("timeInForce", "GTC"),
        ("quantity", "1"),
        ("price", "0.1"),
        ("recvWindow", "5000"),
        ("timestamp", "1499827319559"),
    ]
    assert encode_params(params) == DOC_TOTAL_PARAMS
    assert HmacSigner(SecretStr(API_SECRET)).sign(encode_params(params)) == DOC_SIGNATURE


def test_non_ascii_values_are_percent_encoded_as_utf8_before_signing() -> None:
    encoded = encode_params([("symbol", "这是测试币456"), ("note", "a b+c/d~e")])
    assert encoded == (
        "symbol=%E8%BF%99%E6%98%AF%E6%B5%8B%E8%AF%95%E5%B8%81456&note=a%20b%2Bc%2Fd~e"
    )


def test_ws_api_payload_sorts_params_and_leaves_out_the_signature() -> None:
    params = {"timestamp": "1", "apiKey": "k", "recvWindow": "5000", "signature": "x"}
    assert ws_signature_payload(params) == "apiKey=k&recvWindow=5000&timestamp=1"


def test_server_clock_takes_the_round_trip_midpoint_as_the_offset() -> None:
    clock = ServerClock(wall=lambda: 1000.0)
    clock.update(server_ms=1_000_250, sent_local_ms=999_900, received_local_ms=1_000_100)
    assert clock.offset_ms == 250
    assert clock.now_ms() == 1_000_250
    assert clock.synced


def test_secrets_never_appear_in_reprs() -> None:
    config = make_config()
    signer = HmacSigner(SecretStr(API_SECRET))
    for text in (repr(config), str(config), repr(signer)):
        assert API_SECRET not in text
        assert config.api_key not in text


def test_empty_hmac_secret_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="api_secret"):
        make_signer("hmac", api_secret=SecretStr(""), private_key_path=None)


def test_unknown_key_type_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="key_type"):
        make_signer("rsa", api_secret=SecretStr("s"), private_key_path=None)


def test_ed25519_without_a_key_path_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="private_key_path"):
        make_signer("ed25519", api_secret=SecretStr("s"), private_key_path=None)
