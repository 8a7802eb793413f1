"""``python -m engine.venues.simulator --port 0 --seed 7 --faults faults.toml``: a standalone
simulator (until ``tradectl simulator`` wraps :func:`serve_forever`)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from engine.venues.simulator.config import SimulatorConfig
from engine.venues.simulator.faults import FaultPlan
from engine.venues.simulator.server import serve_forever


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m engine.venues.simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--config", type=Path, default=None, help="simulator TOML/JSON")
    parser.add_argument("--faults", type=Path, default=None, help="fault plan TOML/JSON")
    parser.add_argument("--restore", type=Path, default=None, help="snapshot to start from")
    args = parser.parse_args(argv)
    if args.config:
        config = SimulatorConfig.load(args.config)
    else:
        # what `tradectl run` trades by default, so an engine pointed here finds its symbols
        from engine.demo import standalone_config

        config = standalone_config(0)
    if args.seed is not None:
        config = dataclasses.replace(config, seed=args.seed)
    if args.faults is not None:
        config = dataclasses.replace(config, faults=FaultPlan.load(args.faults))
    serve_forever(config, host=args.host, port=args.port, restore_from=args.restore)


if __name__ == "__main__":
    main()
