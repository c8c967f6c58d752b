"""Subprocess mode of the loopback server (benchmarks): ``python -m datafactory.testing.loopback``.

    python -m datafactory.testing.loopback --port 0 --latency 0.2 [--responder gsm8k] [--fault-rate 0.05 --seed 1]

prints one line ``LISTENING http://127.0.0.1:PORT/v1`` and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import signal
import sys

from datafactory.testing.faults import transient_fault_fn
from datafactory.testing.loopback import LoopbackServer
from datafactory.testing.responders import RESPONDERS


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m datafactory.testing.loopback",
        description="Loopback OpenAI-compatible fake API server (prints 'LISTENING <base_url>').",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = a random free port")
    p.add_argument("--latency", type=float, default=0.0, help="seconds to wait before each reply")
    p.add_argument("--fault-rate", type=float, default=0.0, help="probability of a transient fault")
    p.add_argument("--seed", type=int, default=None, help="seed for the fault draws")
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY'")
    p.add_argument("--keep-log", action="store_true", help="keep the per-request log in memory")
    p.add_argument("--responder", choices=sorted(RESPONDERS), default="default",
                   help="what the model answers (gsm8k: a distinct valid rephrase of each problem)")
    return p.parse_args(argv)


async def _amain(args: argparse.Namespace) -> None:
    server = LoopbackServer(
        latency_s=args.latency,
        responder=RESPONDERS[args.responder],
        expected_api_key=args.api_key,
        host=args.host,
        port=args.port,
        keep_log=args.keep_log,
    )
    if args.fault_rate > 0:
        server.set_fault_fn(transient_fault_fn(args.fault_rate, args.seed))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # e.g. Windows
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))

    def ready() -> None:
        sys.stdout.write(f"LISTENING {server.base_url}\n")
        sys.stdout.flush()

    await server.serve(stop, on_ready=ready)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        asyncio.run(_amain(args))
    else:
        uvloop.run(_amain(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
