"""The ops server's pieces that need no engine: binding errors and readiness reports."""

from __future__ import annotations

import socket

import pytest

from engine.exceptions import ConfigError
from engine.ops_http import bind
from engine.readiness import Readiness


def test_a_busy_port_is_one_config_error_naming_the_setting() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=r"^TRADECTL_METRICS_PORT: cannot serve") as caught:
            bind("127.0.0.1", port)
    assert "\n" not in str(caught.value)


def test_an_address_this_host_does_not_have_names_the_host_setting() -> None:
    # 192.0.2.0/24 is TEST-NET-1: never assigned to a local interface
    with pytest.raises(ConfigError, match=r"TRADECTL_METRICS_HOST 192\.0\.2\.1"):
        bind("192.0.2.1", 0)


def test_a_port_out_of_range_is_refused_before_binding() -> None:
    with pytest.raises(ConfigError, match=r"TRADECTL_METRICS_PORT: 70000 is not a port"):
        bind("127.0.0.1", 70000)


def test_port_zero_binds_a_free_port() -> None:
    sock = bind("127.0.0.1", 0)
    try:
        assert sock.getsockname()[1] > 0
    finally:
        sock.close()


def test_readiness_with_no_parts_yet_is_starting() -> None:
    report = Readiness().report()
    assert report["ready"] is False
    assert report["parts"] == {"engine": "starting: the database and the venue are not open yet"}


def test_readiness_names_each_part_that_is_not_ready() -> None:
    readiness = Readiness()
    readiness.add("lease", lambda: None)
    readiness.add("streams", lambda: "user stream not connected")
    assert readiness.report() == {
        "ready": False,
        "parts": {"lease": "ok", "streams": "user stream not connected"},
    }


def test_a_check_that_raises_reads_as_not_ready() -> None:
    def broken() -> str | None:
        raise RuntimeError("boom")

    readiness = Readiness()
    readiness.add("ledger", broken)
    assert readiness.report() == {
        "ready": False,
        "parts": {"ledger": "check failed: RuntimeError: boom"},
    }
