"""Is a host's data current? Prometheus's own view of the host's scrape targets decides.

A host is ``down`` when every target its series came from fails to scrape (Prometheus's
``health`` "down", i.e. ``up == 0``), and ``stale`` when its newest scrape is older than
:data:`STALE_INTERVALS` scrape intervals (an exporter that hangs, a Prometheus just restarted
that serves minutes-old samples until its first scrape) or when its series are gone. Without a
target list (a federating front that does not serve ``/api/v1/targets``) only the last case can
be told.
"""

from __future__ import annotations

from ..model import Alert, HostStatus
from ..pipeline import iso
from .mapping import LAST_SAMPLE_STEP_S
from .promql import Target

STALE_INTERVALS = 3  # a sample older than this many scrape intervals is stale
DEFAULT_INTERVAL_S = 60.0  # Prometheus's default scrape_interval, when a target does not say


def host_status(host: str, instances: set[str], targets: dict[str, Target] | None, now: float,
                down_since: dict[str, float], seen: bool, last_seen: float | None,
                last_sample: float | None = None, known_intervals: dict[str, float] | None = None) -> HostStatus:
    """``down_since`` (host -> when it went down) is kept by the caller across refreshes;
    ``last_sample`` is the time of the host's newest sample in Prometheus, when known: a host
    went down when its last good scrape was. ``known_intervals`` (target -> scrape interval, as
    last listed) stands in while Prometheus lists no targets: one that just started lists none
    for its first seconds while it already serves the samples it had before it stopped
    (tests/fixtures/prometheus/targets-just-started.json, Prometheus 2.42: none until 6.2 s)."""
    mine = [targets[i] for i in sorted(instances) if targets and i in targets]
    if mine and all(t.health == "down" for t in mine):
        since = down_since.setdefault(host, last_sample if last_sample is not None else now)
        errors = sorted({t.last_error for t in mine if t.last_error})
        names = ", ".join(t.instance for t in mine)
        reason = f"Prometheus cannot scrape {names}" + (f": {errors[0]}" if errors else "")
        return HostStatus("down", iso(since), reason)
    down_since.pop(host, None)
    if not seen:
        when = iso(last_sample or last_seen) if (last_sample or last_seen) is not None else None
        return HostStatus("stale", when, f"no series from {host} in Prometheus"
                          + (f" since {when[11:19]}Z" if when else "") + " (exporter stopped or target removed)")
    if targets and instances and not mine:
        return HostStatus("stale", None,
                          f"{host} is no longer a scrape target of this Prometheus (removed from its config?): "
                          f"the numbers shown are its last samples")
    old = []
    for t in mine:
        limit = STALE_INTERVALS * (t.interval_s or DEFAULT_INTERVAL_S)
        if t.last_scrape is None:
            old.append((None, t))
        elif now - t.last_scrape > limit:
            old.append((t.last_scrape, t))
    every = [t.interval_s for t in (mine or (targets or {}).values()) if t.interval_s]
    if not every and not targets and known_intervals:
        every = [known_intervals[i] for i in instances if i in known_intervals]
    interval = min(every) if every else DEFAULT_INTERVAL_S
    if last_sample is not None and now - last_sample > STALE_INTERVALS * interval + LAST_SAMPLE_STEP_S:
        return HostStatus("stale", iso(last_sample), f"newest sample of {host} is {now - last_sample:.0f} s old "
                                                     f"(scraped every {interval:g} s)")
    if mine and len(old) == len(mine):
        newest = max((ts for ts, _ in old if ts is not None), default=None)
        if newest is None:
            return HostStatus("stale", None, f"Prometheus has not scraped {host} yet (restarted?): "
                                             f"the numbers shown are older samples")
        return HostStatus("stale", iso(newest), f"newest sample of {host} is {now - newest:.0f} s old "
                                                 f"(scraped every {mine[0].interval_s or DEFAULT_INTERVAL_S:g} s)")
    return HostStatus("up")


def status_alert(host: str, status: HostStatus) -> Alert | None:
    """``host_down`` (critical) or ``host_stale`` (warning); None while the host is up."""
    if status.state == "up":
        return None
    kind, severity = ("host_down", "critical") if status.state == "down" else ("host_stale", "warning")
    since = f" since {status.since[11:19]}Z" if status.since else ""
    return Alert(kind=kind, severity=severity, subject=host, since=status.since,
                 message=f"{status.state}{since}: {status.reason}; its numbers are not current")
