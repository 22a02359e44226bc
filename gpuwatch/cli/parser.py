"""The command line's grammar: every flag, value check and help text, and nothing else. The
only module (with :mod:`.commands`) that touches argparse."""

from __future__ import annotations

import argparse
import ipaddress

from .. import __version__
from ..errors import UsageError
from ..meter.names import DEFAULT_METRICS as METER_DEFAULT_METRICS
from ..meter.routes import parse_listen as parse_meter_listen
from ..meter.routes import parse_route

DEFAULT_LISTEN = "127.0.0.1:9835"
# the spellings of --demo (tests/test_nvml_drivers.py checks it names every scenario, fault and
# driver of gpuwatch.sim, which the command line does not import)
SCENARIO_HELP = ("use the built-in simulated box: h100x8 (default), h100x8-4i, h200x8, rtx4090x2, ollama3x or h100xN (N GPUs). "
                 "Faults and a driver generation as SCENARIO:FAULT[=GPU],...,driver=BRANCH, e.g. h100x8:hot,lost or "
                 "h100x8:driver=r535-early,lost-at-start (faults: hot idle pcie lost power unsupported olddriver "
                 "offload ecc lost-at-start mig fabric nothresholds container; 'none' clears the defaults; drivers: "
                 "r470 r525 r535-early r535 r550 r570 r580 r610)")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + message
        raise UsageError(f"{message} (see `{self.prog} --help`)")


# ---- value checks: each raises ArgumentTypeError with a one-line reason ----------------------
def _seconds_in(lo: float, hi: float, what: str):
    def check(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {what} {text!r}: expected seconds, e.g. 1 or 0.5") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{what} {text} is outside {lo:g}..{hi:g} seconds")
        return value
    return check


_interval = _seconds_in(0.1, 3600, "interval")


def _url(text: str) -> str:
    from ..usage import url_problem
    problem = url_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text.rstrip("/")


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = text.lower().split("x")
        w, h = int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: expected WIDTHxHEIGHT, e.g. 120x40") from None
    if not (40 <= w <= 500 and 10 <= h <= 300):
        raise argparse.ArgumentTypeError(f"size {text} is outside 40x10..500x300")
    return w, h


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: expected a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"count {text} must be at least 1")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number")
    return value


def parse_listen(text: str) -> tuple[str, int]:
    """``127.0.0.1:9835``, ``0.0.0.0:9835``, ``[::1]:9835``, ``localhost:9835`` or ``:9835``
    (loopback). Raises ValueError with a one-line reason."""
    text = text.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"invalid --listen {text!r}: expected [IPV6]:PORT")
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError(f"invalid --listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9835")
        if ":" in host:
            raise ValueError(f"invalid --listen {text!r}: write an IPv6 address as [ADDR]:PORT")
    if not port.isdigit():
        raise ValueError(f"invalid --listen {text!r}: port {port!r} is not a number")
    p = int(port)
    if not 0 <= p <= 65535:
        raise ValueError(f"invalid --listen {text!r}: port {p} is outside 0..65535")
    host = host or "127.0.0.1"
    if host == "localhost":
        host = "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"invalid --listen {text!r}: {host!r} is not an IP address (or localhost)") from None
    return host, p


def _route(text: str):
    try:
        return parse_route(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _meter_metrics(text: str):
    if text.lower() in ("none", "off", ""):
        return None
    try:
        return parse_meter_listen(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _listen(text: str) -> tuple[str, int]:
    try:
        return parse_listen(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


# ---- the grammar ------------------------------------------------------------------------------
def _add_source_options(p: argparse.ArgumentParser, sub: bool) -> None:
    """What to watch: the same options on the dashboard and on every subcommand that samples."""
    d = {"default": argparse.SUPPRESS} if sub else {}
    p.add_argument("--demo", nargs="?", const="h100x8", metavar="SCENARIO", help=SCENARIO_HELP, **d)
    p.add_argument("--backend", action="append", type=_url, metavar="URL",
                   help="an inference server to watch (repeatable), e.g. http://127.0.0.1:8000", **d)
    p.add_argument("--no-discover", action="store_true", help="do not look for local inference servers", **d)
    p.add_argument("--nginx-conf", metavar="PATH", help="nginx config whose upstreams of watched servers are "
                   "replica pools (default /etc/nginx/nginx.conf)", **d)
    p.add_argument("--config", metavar="PATH", help="config file (default ~/.config/gpuwatch/config.toml)", **d)
    p.add_argument("--interval", type=_interval, metavar="S", help="seconds between samples", **d)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gpuwatch", description="A live dashboard of every GPU and inference server on this box.")
    parser.add_argument("--version", action="version", version=f"gpuwatch {__version__}")
    _add_source_options(parser, sub=False)
    parser.add_argument("--theme", metavar="NAME", help="colour theme (files in themes/ or Textual's own)")
    parser.add_argument("--prometheus", type=_url, metavar="URL", help="watch a fleet through a Prometheus server")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    snap = sub.add_parser("snapshot", help="print one snapshot of the box (samples twice, one interval apart)")
    _add_source_options(snap, sub=True)
    fmt = snap.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="JSON (schema v1, docs/SCHEMA.md)")
    fmt.add_argument("--text", action="store_true", help="a plain-text table (the default)")
    fmt.add_argument("--svg", metavar="FILE", help="draw the dashboard headlessly into an SVG file")
    snap.add_argument("--size", type=_size, metavar="WxH", help="terminal size for --svg (default 120x40)")
    snap.add_argument("--prometheus", type=_url, metavar="URL", default=argparse.SUPPRESS,
                      help="one document per host of a fleet, read through Prometheus")
    snap.add_argument("--theme", metavar="NAME", default=argparse.SUPPRESS, help="theme for --svg")

    rec = sub.add_parser("record", help="record snapshots into an NDJSON file (.gz: gzip) for replay")
    rec.add_argument("-o", "--output", required=True, metavar="FILE",
                     help="file to write, one schema v1 snapshot per line; gzip when it ends in .gz")
    _add_source_options(rec, sub=True)
    stop = rec.add_mutually_exclusive_group()
    stop.add_argument("--duration", type=_positive, metavar="S", help="stop after S seconds")
    stop.add_argument("--count", type=_count, metavar="N", help="stop after N snapshots")
    rec.add_argument("--append", action="store_true", help="add to an existing plain file instead of refusing")
    rec.add_argument("--rotate-mb", type=_positive, metavar="MB",
                     help="when the file reaches MB MiB, rename it (rec.ndjson -> rec.000001.ndjson) and start a new one")
    rec.add_argument("--keep", type=_count, default=10, metavar="N",
                     help="rotated files to keep beside the current one (default 10)")

    rep = sub.add_parser("replay", help="the dashboard driven from a recording")
    rep.add_argument("file", metavar="FILE", help="a recording from `gpuwatch record` (.ndjson or .gz)")
    rep.add_argument("--speed", type=_positive, default=1.0, metavar="X", help="playback speed: 1, 10, 60 ... (default 1)")
    rep.add_argument("--start", metavar="TIME", help="start at this time (ISO 8601, e.g. 2026-11-23T03:00:00Z)")
    rep.add_argument("--rotated", action="store_true", help="also read the rotated files beside FILE, oldest first")
    rep.add_argument("--theme", metavar="NAME", default=argparse.SUPPRESS, help="colour theme")
    rep.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                     help="config file (default ~/.config/gpuwatch/config.toml): its theme")

    doc = sub.add_parser("doctor", help="check the box once: topology, links, persistence, drivers, NUMA, servers, "
                                        "alerts (exit 1 when something fails)")
    _add_source_options(doc, sub=True)
    doc.add_argument("--json", action="store_true", help="the report as JSON")

    bench = sub.add_parser("bench", help="time a short generation on an inference server (tok/s)")
    bench.add_argument("url", type=_url, metavar="URL", help="server base URL, e.g. http://127.0.0.1:11434")
    bench.add_argument("--model", metavar="M", help="model to use (default: the first loaded one)")
    bench.add_argument("--runs", type=_count, default=1, metavar="N", help="generations to average (default 1)")
    bench.add_argument("--api-key-env", metavar="VAR", help="environment variable holding the API key")

    serve = sub.add_parser("serve", help="export this box's metrics for Prometheus (/metrics, /healthz)")
    _add_source_options(serve, sub=True)
    serve.add_argument("--listen", type=_listen, default=parse_listen(DEFAULT_LISTEN), metavar="HOST:PORT",
                       help=f"address to serve on (default {DEFAULT_LISTEN}: this machine only; "
                            f"0.0.0.0:9835 for every interface)")
    serve.add_argument("--host-label", metavar="NAME", help="the host label on every series (default: the host name)")
    meter = sub.add_parser("meter", help="a transparent metering proxy: live tok/s, TTFT and ITL for servers "
                                         "without counters (Ollama); see docs/METER.md")
    meter.add_argument("--route", action="append", type=_route, required=True, metavar="LISTEN=UPSTREAM",
                       help="listen on LISTEN and forward to UPSTREAM (repeatable), "
                            "e.g. 127.0.0.1:11534=http://127.0.0.1:11434")
    meter.add_argument("--metrics", type=_meter_metrics, default=_meter_metrics(METER_DEFAULT_METRICS),
                       metavar="HOST:PORT", help=f"serve Prometheus text at http://HOST:PORT/metrics (default "
                                                 f"{METER_DEFAULT_METRICS}; 'none' turns it off)")
    meter.add_argument("--drain", type=_seconds_in(0, 3600, "drain time"), default=5.0, metavar="S",
                       help="on SIGTERM, let running requests finish for up to S seconds (default 5)")
    return parser
