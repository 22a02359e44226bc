"""``gpuwatch meter --route LISTEN=UPSTREAM [--route ...] [--metrics HOST:PORT]``."""

from __future__ import annotations

import argparse

from . import names


def _route(text: str):
    from .routes import parse_route
    try:
        return parse_route(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _metrics(text: str):
    if text.lower() in ("none", "off", ""):
        return None
    from .routes import parse_listen
    try:
        return parse_listen(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds {text!r}") from None
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} is outside 0..3600 seconds")
    return value


def add_meter_parser(sub) -> None:
    p = sub.add_parser("meter", help="a transparent metering proxy: live tok/s, TTFT and ITL for servers "
                                     "without counters (Ollama); see docs/METER.md")
    p.add_argument("--route", action="append", type=_route, required=True, metavar="LISTEN=UPSTREAM",
                   help="listen on LISTEN and forward to UPSTREAM (repeatable), "
                        "e.g. 127.0.0.1:11534=http://127.0.0.1:11434")
    p.add_argument("--metrics", type=_metrics, default=_metrics(names.DEFAULT_METRICS), metavar="HOST:PORT",
                   help=f"serve Prometheus text at http://HOST:PORT/metrics (default {names.DEFAULT_METRICS}; "
                        "'none' turns it off)")
    p.add_argument("--drain", type=_seconds, default=5.0, metavar="S",
                   help="on SIGTERM, let running requests finish for up to S seconds (default 5)")


def cmd_meter(args) -> int:
    from ..errors import UsageError

    routes = args.route
    seen = {args.metrics} if args.metrics else set()
    for r in routes:
        if (r.host, r.port) in seen:
            raise UsageError(f"{r.listen} is given twice (routes and --metrics need one address each)")
        seen.add((r.host, r.port))
    from .proxy import run
    return run(routes, args.metrics, drain_s=args.drain)
