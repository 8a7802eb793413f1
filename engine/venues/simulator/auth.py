"""Request signing as Binance checks it: API key, HMAC-SHA256 signature, timestamp window."""

from __future__ import annotations

import hashlib
import hmac
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.requests import Request

from engine.venues.simulator.params import param_missing
from engine.venues.simulator.records import Rejection
from engine.venues.simulator.state import SimulatorState


def _strip_signature(raw: str) -> str:
    return "&".join(p for p in raw.split("&") if p and not p.startswith("signature="))


def _sign(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def _ws_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Authenticator:
    def __init__(self, state: SimulatorState) -> None:
        self.state = state

    def authenticate(
        self, request: Request, raw_query: str, body: str, params: dict[str, str]
    ) -> None:
        cfg = self.state.config
        key = request.headers.get("X-MBX-APIKEY")
        if not key:
            raise Rejection(-2014, "API-key format invalid.", http_status=401)
        if not hmac.compare_digest(key.encode(), cfg.api_key.encode()):
            raise Rejection(
                -2015, "Invalid API-key, IP, or permissions for action.", http_status=401
            )
        self.check_signed(params, _strip_signature(raw_query) + _strip_signature(body))

    def check_signed(self, params: dict[str, Any], signed_payload: str) -> None:
        cfg = self.state.config
        signature = params.get("signature")
        if not signature:
            raise param_missing("signature")
        timestamp = params.get("timestamp")
        if timestamp in (None, ""):
            raise param_missing("timestamp")
        expected = _sign(cfg.api_secret, signed_payload)
        if not hmac.compare_digest(expected, str(signature).lower()):
            raise Rejection(-1022, "Signature for this request is not valid.")
        try:
            ts = int(str(timestamp))
            recv_window = Decimal(str(params.get("recvWindow", 5000)))
        except (ValueError, InvalidOperation):
            raise Rejection(-1100, "Illegal characters found in parameter 'timestamp'.") from None
        if recv_window > 60_000 or recv_window <= 0:
            raise Rejection(-1131, "recvWindow must be less than 60000")
        ts_ms = Decimal(ts) / 1000 if ts > 10**14 else Decimal(ts)  # microseconds accepted
        now_ms = self.state.now_ms()
        if ts_ms >= now_ms + 1000:
            raise Rejection(
                -1021, "Timestamp for this request was 1000ms ahead of the server's time."
            )
        if now_ms - ts_ms > recv_window:
            raise Rejection(-1021, "Timestamp for this request is outside of the recvWindow.")

    def authenticate_ws(self, params: dict[str, Any]) -> None:
        api_key = params.get("apiKey")
        if not api_key:
            raise param_missing("apiKey")
        if not hmac.compare_digest(str(api_key).encode(), self.state.config.api_key.encode()):
            raise Rejection(
                -2015, "Invalid API-key, IP, or permissions for action.", http_status=401
            )
        payload = "&".join(
            f"{k}={_ws_value(v)}" for k, v in sorted(params.items()) if k != "signature"
        )
        self.check_signed({k: _ws_value(v) for k, v in params.items()}, payload)
