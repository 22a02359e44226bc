"""Command line: ``gpuwatch`` (the dashboard) and its subcommands.

Every user error (a bad flag or value, a broken config) is one line on stderr and exit
code 2; nothing here lets a traceback reach the terminal.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from . import __version__


class UsageError(Exception):
    """A mistake in how gpuwatch was called: one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + message
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid interval {text!r}: expected seconds, e.g. 1 or 0.5") from None
    if not 0.1 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"interval {text} is outside 0.1..3600 seconds")
    return value


def _url(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"invalid URL {text!r}: expected http://HOST:PORT")
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


def _add_source_options(p: argparse.ArgumentParser, sub: bool) -> None:
    d = {"default": argparse.SUPPRESS} if sub else {}
    p.add_argument("--demo", nargs="?", const="h100x8", metavar="SCENARIO",
                   help="use the built-in simulated box: h100x8 (default), h100x8-4i, h100xN (N GPUs), rtx4090x2 or ollama3x, with faults as "
                        "SCENARIO:FAULT[=GPU],... e.g. h100x8:hot,lost (faults: hot idle pcie lost power "
                        "unsupported olddriver offload ecc; 'none' clears defaults)", **d)
    p.add_argument("--backend", action="append", type=_url, metavar="URL",
                   help="an inference server to watch (repeatable), e.g. http://127.0.0.1:8000", **d)
    p.add_argument("--no-discover", action="store_true", help="do not look for local inference servers", **d)
    p.add_argument("--config", metavar="PATH", help="config file (default ~/.config/gpuwatch/config.toml)", **d)
    p.add_argument("--interval", type=_interval, metavar="S", help="seconds between samples", **d)
    p.add_argument("--nginx-conf", metavar="PATH", help="nginx config whose upstreams are replica pools "
                   "(default /etc/nginx/nginx.conf)", **d)


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
    snap.add_argument("--size", type=_size, default=(120, 40), metavar="WxH", help="terminal size for --svg")
    snap.add_argument("--prometheus", type=_url, metavar="URL", default=argparse.SUPPRESS,
                      help="one document per host of a fleet, read through Prometheus")
    snap.add_argument("--theme", metavar="NAME", default=argparse.SUPPRESS, help="theme for --svg")
    _add_record_parser(sub)

    rep = sub.add_parser("replay", help="the dashboard driven from a recording")
    rep.add_argument("file", metavar="FILE", help="a recording from `gpuwatch record` (.ndjson or .gz)")
    rep.add_argument("--speed", type=_positive, default=1.0, metavar="X", help="playback speed: 1, 10, 60 ... (default 1)")
    rep.add_argument("--start", metavar="TIME", help="start at this time (ISO 8601, e.g. 2026-11-23T03:00:00Z)")
    rep.add_argument("--rotated", action="store_true", help="also read the rotated files beside FILE, oldest first")
    rep.add_argument("--theme", metavar="NAME", default=argparse.SUPPRESS, help="colour theme")

    doc = sub.add_parser("doctor", help="check the box once: topology, links, persistence, drivers, NUMA, servers, "
                                        "alerts (exit 1 when something fails)")
    _add_source_options(doc, sub=True)
    doc.add_argument("--json", action="store_true", help="the report as JSON")

    bench = sub.add_parser("bench", help="time a short generation on an inference server (tok/s)")
    bench.add_argument("url", type=_url, metavar="URL", help="server base URL, e.g. http://127.0.0.1:11434")
    bench.add_argument("--model", metavar="M", help="model to use (default: the first loaded one)")
    bench.add_argument("--runs", type=_count, default=1, metavar="N", help="generations to average (default 1)")
    bench.add_argument("--api-key-env", metavar="VAR", help="environment variable holding the API key")
    from .fleet.cli import add_fleet_parsers  # issue 8: `serve`
    add_fleet_parsers(sub, _add_source_options)
    from .meter.cli import add_meter_parser  # issue 14: `meter`
    add_meter_parser(sub)
    return parser


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


def _add_record_parser(sub) -> None:
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


def _fail(message: str, code: int = 2) -> int:
    print(f"gpuwatch: {message}", file=sys.stderr)
    return code


def _settings(args):
    """Merge the config file with the command line (the command line wins)."""
    from .config import Backend, ConfigError, load_config

    cfg = load_config(getattr(args, "config", None))
    try:  # thresholds are checked now, so a typo is a one-line message at start, not later
        alert_config(cfg)
    except ValueError as e:
        raise ConfigError(f"config file {cfg.path}: {e}") from None
    interval = getattr(args, "interval", None) or cfg.interval
    backends = list(cfg.backends) + [Backend(url=u) for u in (getattr(args, "backend", None) or [])]
    discover = cfg.discover and not getattr(args, "no_discover", False)
    args.nginx_conf = getattr(args, "nginx_conf", None) or cfg.nginx_conf
    if args.nginx_conf and not os.path.exists(args.nginx_conf):
        raise ConfigError(f"nginx config {args.nginx_conf} does not exist")
    return cfg, interval, backends, discover


def _make_sampler(args, backends, discover, start_offset_s: float = 0.0):
    from .pipeline import make_sampler
    return make_sampler(demo=getattr(args, "demo", None), backends=backends, discover=discover,
                        start_offset_s=start_offset_s, nginx_conf=getattr(args, "nginx_conf", None))


def alert_config(cfg):
    from .analysis.alerts import AlertConfig
    return AlertConfig.from_toml_dict(cfg.alerts or {})


def _sample_window(args, cfg, interval, backends, discover, count: int = 2):
    """``count`` snapshots one interval apart (rates are real from the second on), with the
    alert conditions seen over the window on the last one."""
    from .analysis.alerts import evaluate_once

    # a one-shot look at the simulated box finds it running for a minute, faults established
    sampler = _make_sampler(args, backends, discover, start_offset_s=60.0)
    snaps = []
    try:
        for i in range(count):
            if i:
                time.sleep(interval)
            snaps.append(sampler.sample(wait_instances=True))
    finally:
        sampler.close()
    snaps[-1].alerts = evaluate_once(snaps[1:] or snaps, alert_config(cfg))
    return snaps


def cmd_snapshot(args) -> int:
    if getattr(args, "prometheus", None):
        from .fleet.cli import cmd_fleet_snapshot  # the fleet issue (8)
        return cmd_fleet_snapshot(args)
    cfg, interval, backends, discover = _settings(args)
    if args.svg:
        from .frontends.tui.shots import snapshot_svg
        return snapshot_svg(args, cfg, interval, backends, discover)
    snap = _sample_window(args, cfg, interval, backends, discover)[-1]
    if args.json:
        from .frontends.jsonout import dumps_snapshot
        sys.stdout.write(dumps_snapshot(snap) + "\n")
    else:
        from .frontends.text import render_text
        sys.stdout.write(render_text(snap))
    return 0


def cmd_dashboard(args) -> int:
    cfg, interval, backends, discover = _settings(args)
    from .fleet.cli import cmd_fleet_dashboard, prometheus_url  # issue 8: the fleet screen
    url = prometheus_url(args, cfg) if getattr(args, "demo", None) is None else args.prometheus
    if url:
        return cmd_fleet_dashboard(args, cfg, interval, url)
    try:
        from .frontends.tui.app import run_dashboard
    except ImportError:  # until the dashboard lands: print a snapshot
        args.json = False
        return cmd_snapshot(args)
    return run_dashboard(args, cfg, interval, backends, discover)


def cmd_doctor(args) -> int:
    from .analysis.doctor import run_doctor

    cfg, interval, backends, discover = _settings(args)
    snaps = _sample_window(args, cfg, min(interval, 1.0), backends, discover, count=3)
    report = run_doctor(snaps[1:], config=alert_config(cfg))
    if args.json:
        from .frontends.jsonout import dumps
        sys.stdout.write(dumps(report.to_dict()) + "\n")
    else:
        sys.stdout.write(report.to_text().rstrip("\n") + "\n")
    return report.exit_code


def cmd_bench(args) -> int:
    from .collect.bench import format_bench, run_bench

    result = run_bench(args.url, None, model=args.model, runs=args.runs, api_key_env=args.api_key_env)
    print(format_bench(result))
    return 0 if result.error is None else 1


def cmd_replay(args) -> int:
    from .frontends.tui.replay import run_replay
    return run_replay(args)


def cmd_record(args) -> int:
    from .frontends.recorder import cmd_record as run
    return run(args)


def cmd_serve(args) -> int:  # issue 8
    from .fleet.cli import cmd_serve as run
    return run(args)


def cmd_meter(args) -> int:  # issue 14
    from .meter.cli import cmd_meter as run
    return run(args)


COMMANDS = {"meter": cmd_meter, "snapshot": cmd_snapshot, "record": cmd_record, "doctor": cmd_doctor, "bench": cmd_bench,
            "replay": cmd_replay, "serve": cmd_serve}


def main(argv: list[str] | None = None) -> int:
    from .config import ConfigError
    from .sim.scenarios import ScenarioError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        handler = COMMANDS.get(args.command, cmd_dashboard)
        return handler(args)
    except UsageError as e:
        return _fail(str(e))
    except (ConfigError, ScenarioError) as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `gpuwatch snapshot --json | head`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0


def entry() -> None:
    sys.exit(main())
