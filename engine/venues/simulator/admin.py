"""The admin endpoints tests and the chaos harness drive: ground truth, faults, snapshots,
market steps, deposits and quotes (not part of Binance's protocol)."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from engine.venues.simulator.faults import FaultPlan
from engine.venues.simulator.records import Rejection
from engine.venues.simulator.state import SimulatorState


class AdminRoutes:
    def __init__(self, state: SimulatorState) -> None:
        self.state = state

    async def admin_state(self, request: Request) -> Response:
        return JSONResponse(self.state.ground_truth())

    async def admin_faults(self, request: Request) -> Response:
        if request.method in ("PUT", "POST"):
            try:
                plan = FaultPlan.from_mapping(await request.json())
            except Exception as exc:
                return JSONResponse({"error": f"bad fault plan: {exc}"}, status_code=400)
            self.state.set_faults(plan)
        return JSONResponse(
            {"plan": self.state.faults.plan.to_mapping(), "counters": self.state.fault_counts()}
        )

    async def admin_snapshot(self, request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(self.state.snapshot_data())
        body = await request.json()
        path = self.state.snapshot(str(body["path"]))
        return JSONResponse({"path": str(path)})

    async def admin_restore(self, request: Request) -> Response:
        body = await request.json()
        try:
            if "path" in body:
                self.state.restore(str(body["path"]))
            else:
                self.state.restore_data(body)
        except (ValueError, OSError, KeyError) as exc:
            return JSONResponse({"error": f"cannot restore: {exc}"}, status_code=400)
        return JSONResponse({"restored": True})

    async def admin_step(self, request: Request) -> Response:
        body = await request.body()
        steps = int(json.loads(body).get("steps", 1)) if body else 1
        for _ in range(steps):
            self.state.step()
        return JSONResponse({"market": {s: self.state.touch(s) for s in self.state.sources}})

    async def admin_deposit(self, request: Request) -> Response:
        body = await request.json()
        try:
            self.state.deposit(str(body["asset"]), Decimal(str(body["amount"])))
        except Rejection as exc:
            return JSONResponse({"code": exc.code, "msg": exc.msg}, status_code=400)
        return JSONResponse({"balances": self.state.ground_truth()["balances"]})

    async def admin_quote(self, request: Request) -> Response:
        """``{"symbol", "bid", "ask", "size"}`` (decimals as strings): set the touch and match."""
        try:
            body = await request.json()
            self.state.set_quote(
                str(body["symbol"]),
                bid=Decimal(str(body["bid"])),
                ask=Decimal(str(body["ask"])),
                size=Decimal(str(body["size"])),
            )
        except (ValueError, KeyError, TypeError, InvalidOperation) as exc:
            return JSONResponse({"error": f"bad quote: {exc}"}, status_code=400)
        return JSONResponse({"market": {body["symbol"]: self.state.touch(str(body["symbol"]))}})
