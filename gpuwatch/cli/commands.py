"""One small function per subcommand: turn the parsed command line into :class:`Settings` and
options, hand them to a front end, return its exit code. Nothing below this reads argparse."""

from __future__ import annotations

import sys

from ..config import Settings, load_settings


def settings_from(args) -> Settings:
    """The config file merged with the command line (flags a subcommand lacks are absent)."""
    return load_settings(
        getattr(args, "config", None),
        interval=getattr(args, "interval", None),
        theme=getattr(args, "theme", None),
        backends=getattr(args, "backend", None) or (),
        discover=not getattr(args, "no_discover", False),
        demo=getattr(args, "demo", None),
        prometheus_url=getattr(args, "prometheus", None),
        nginx_conf=getattr(args, "nginx_conf", None),
    )


def _check(problem: str | None) -> None:
    if problem:
        from ..errors import UsageError
        raise UsageError(problem)


def _check_theme(args) -> None:
    from ..frontends.tui.themes import theme_problem
    _check(theme_problem(getattr(args, "theme", None)))


def cmd_dashboard(args) -> int:
    from ..usage import no_terminal_problem
    _check_theme(args)
    _check(no_terminal_problem(sys.stdin, sys.stdout, sys.__stderr__))
    settings = settings_from(args)
    # a demo watches the simulated box, unless a fleet was asked for on this command line
    url = settings.prometheus_url if settings.demo is None else getattr(args, "prometheus", None)
    if url:
        from ..frontends.tui.fleet import run_fleet_dashboard
        return run_fleet_dashboard(settings, url)
    from ..frontends.tui.app import run_dashboard
    return run_dashboard(settings)


def cmd_snapshot(args) -> int:
    from ..usage import snapshot_flags_problem
    _check(snapshot_flags_problem(args))
    settings = settings_from(args)
    if getattr(args, "prometheus", None):
        return _fleet_snapshot(settings, args.prometheus, as_json=args.json)
    if args.svg:
        from ..frontends.tui.shots import snapshot_svg
        _check_theme(args)
        return snapshot_svg(settings, args.svg, args.size or (120, 40))
    from ..runtime import sample_window
    snap = sample_window(settings)[-1]
    if args.json:
        from ..frontends.jsonout import dumps_snapshot
        sys.stdout.write(dumps_snapshot(snap) + "\n")
    else:
        from ..frontends.text import render_text
        sys.stdout.write(render_text(snap))
    return 0


def _fleet_snapshot(settings: Settings, url: str, as_json: bool) -> int:
    """One refresh of every host of a fleet. ``--json`` prints ``{"schema_version": 1, "hosts":
    [...], "prometheus": URL, "error": ...}``; an unreachable Prometheus is the ``error``
    (exit 1), never a traceback."""
    from ..fleet.source import FleetSource, fleet_document

    source = FleetSource(url, timeout_s=settings.prometheus_timeout_s, alert_config=settings.alerts, one_shot=True)
    try:
        reading = source.refresh()
    finally:
        source.close()
    if as_json:
        from ..frontends.jsonout import dumps
        sys.stdout.write(dumps(fleet_document(reading, url)) + "\n")
    else:
        from ..frontends.text import render_fleet_text
        sys.stdout.write(render_fleet_text(reading, url))
    if reading.error and not reading.hosts:
        if not as_json:
            print(f"gpuwatch: {reading.error}", file=sys.stderr)
        return 1
    return 0


def cmd_doctor(args) -> int:
    from ..analysis.doctor import run_doctor
    from ..runtime import sample_window

    settings = settings_from(args)
    snaps = sample_window(settings, count=3, interval=min(settings.interval, 1.0))
    report = run_doctor(snaps[1:], config=settings.alerts)
    if args.json:
        from ..frontends.jsonout import dumps
        sys.stdout.write(dumps(report.to_dict()) + "\n")
    else:
        from ..frontends.text import render_doctor
        sys.stdout.write(render_doctor(report))
    return report.exit_code


def cmd_bench(args) -> int:
    from ..collect.bench import format_bench, run_bench

    result = run_bench(args.url, None, model=args.model, runs=args.runs, api_key_env=args.api_key_env)
    print(format_bench(result, args.url), file=sys.stderr if result.error else sys.stdout)
    return 0 if result.error is None else 1


def cmd_replay(args) -> int:
    _check_theme(args)
    from ..frontends.tui.replay import run_replay
    return run_replay(settings_from(args), args.file, speed=args.speed, start=args.start, rotated=args.rotated)


def cmd_record(args) -> int:
    from ..frontends.record import RecordOptions, run_record
    opts = RecordOptions(output=args.output, append=args.append, count=args.count, duration=args.duration,
                         rotate_mb=args.rotate_mb, keep=args.keep)
    return run_record(settings_from(args), opts)


def cmd_serve(args) -> int:
    from ..frontends.exporter import run_serve
    from ..runtime import build_monitor

    settings = settings_from(args)
    monitor = build_monitor(settings, history_points=2)
    try:
        return run_serve(monitor, settings.interval, args.listen, host_label=args.host_label)
    finally:
        from ..pipeline import close_within
        close_within(monitor.close, 0.5)  # SIGTERM: out within 2 s, whatever a collector is stuck in


def cmd_meter(args) -> int:
    from ..errors import UsageError
    from ..meter.proxy import run

    seen = {args.metrics} if args.metrics else set()
    for r in args.route:
        if (r.host, r.port) in seen:
            raise UsageError(f"{r.listen} is given twice (routes and --metrics need one address each)")
        seen.add((r.host, r.port))
    return run(args.route, args.metrics, drain_s=args.drain)


COMMANDS = {"meter": cmd_meter, "snapshot": cmd_snapshot, "record": cmd_record, "doctor": cmd_doctor, "bench": cmd_bench,
            "replay": cmd_replay, "serve": cmd_serve}
