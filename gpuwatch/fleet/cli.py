"""Command-line parts of the fleet feature, kept out of cli.py: the ``serve`` subcommand,
``snapshot --prometheus`` and the fleet dashboard. Imports stay lazy: building the parser
must not load prometheus_client, httpx or Textual."""

from __future__ import annotations

import argparse
import ipaddress
import sys

DEFAULT_LISTEN = "127.0.0.1:9835"


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


def _listen(text: str) -> tuple[str, int]:
    try:
        return parse_listen(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_fleet_parsers(sub, add_source_options) -> None:
    """Add ``serve`` to the subcommands (the ``--prometheus`` options are in cli.py)."""
    p = sub.add_parser("serve", help="export this box's metrics for Prometheus (/metrics, /healthz)")
    add_source_options(p, sub=True)
    p.add_argument("--listen", type=_listen, default=parse_listen(DEFAULT_LISTEN), metavar="HOST:PORT",
                   help=f"address to serve on (default {DEFAULT_LISTEN}: this machine only; "
                        f"0.0.0.0:9835 for every interface)")
    p.add_argument("--host-label", metavar="NAME", help="the host label on every series (default: the host name)")


def cmd_serve(args) -> int:
    from ..cli import _make_sampler, _settings
    from ..pipeline import Monitor, default_alert_engine
    from .exporter import run_serve

    cfg, interval, backends, discover = _settings(args)
    sampler = _make_sampler(args, backends, discover)
    monitor = Monitor(sampler, alert_engine=default_alert_engine(cfg.alerts), history_points=2)
    try:
        return run_serve(monitor, interval, args.listen, host_label=getattr(args, "host_label", None))
    finally:
        monitor.close()


def prometheus_url(args, cfg) -> str | None:
    """``--prometheus URL`` wins over ``[prometheus] url`` in the config."""
    return getattr(args, "prometheus", None) or getattr(cfg, "prometheus_url", None)


def cmd_fleet_snapshot(args, cfg=None, url: str | None = None) -> int:
    """``gpuwatch snapshot --prometheus URL``: one refresh of every host. ``--json`` prints
    ``{"schema_version": 1, "hosts": [...], "prometheus": URL, "error": ...}``; an unreachable
    Prometheus is the ``error`` (exit 1), never a traceback."""
    from .source import FleetSource, fleet_document

    if cfg is None:
        from ..config import load_config
        cfg = load_config(getattr(args, "config", None))
    url = url or args.prometheus
    source = FleetSource(url, timeout_s=cfg.prometheus_timeout_s, alert_config=cfg.alerts, one_shot=True)
    try:
        reading = source.refresh()
    finally:
        source.close()
    if getattr(args, "json", False):
        from ..frontends.jsonout import dumps
        sys.stdout.write(dumps(fleet_document(reading, url)) + "\n")
    else:
        sys.stdout.write(render_fleet_text(reading, url))
    if reading.error and not reading.hosts:
        if not getattr(args, "json", False):
            print(f"gpuwatch: {reading.error}", file=sys.stderr)
        return 1
    return 0


def render_fleet_text(reading, url: str) -> str:
    from .summary import summarize
    lines = [f"fleet via {url}: {len(reading.hosts)} hosts, {reading.refresh_ms:.0f} ms"]
    if reading.error:
        lines.append(f"error: {reading.error}")
    lines.append(f"{'host':<24} {'GPUs':>4} {'util':>9} {'hottest':>12} {'tok/s':>8}  {'state':<22} alerts")
    for s in reading.hosts:
        r = summarize(s)
        lines.append(f"{r.host[:24]:<24} {r.gpus:>4} {r.util_text:>9} {r.hot_text:>12} {r.tok_text:>8}  {r.state_text:<22} {r.alert_text}")
    return "\n".join(lines) + "\n"


def cmd_fleet_dashboard(args, cfg, interval: float, url: str) -> int:
    from ..frontends.tui.fleet import run_fleet_dashboard
    return run_fleet_dashboard(args, cfg, interval, url)
