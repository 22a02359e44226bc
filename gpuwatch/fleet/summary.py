"""One line per host of a fleet, as data: the figures the fleet screen and ``snapshot --text``
word (``frontends/text.py`` turns them into text)."""

from __future__ import annotations

from dataclasses import dataclass

from ..model import Snapshot
from ..vocab import worst_severity


@dataclass
class HostSummary:
    host: str
    gpus: int
    lost: int
    util_mean: float | None
    util_max: float | None
    hot_index: int | None
    hot_c: float | None
    hot_slowdown_c: float | None
    tok_s: float | None
    alerts: int
    worst: str | None
    problem: str | None  # the host's data could not be read (nvml_error / no series)
    counts: dict[str, int] | None = None  # alerts by severity
    state: str = "up"  # up | down | stale (Prometheus's view of the host's targets)
    since: str | None = None

    @property
    def hot_margin_c(self) -> float | None:
        if self.hot_c is None or self.hot_slowdown_c is None:
            return None
        return self.hot_slowdown_c - self.hot_c


def summarize(s: Snapshot) -> HostSummary:
    live = [g for g in s.gpus if not g.lost]
    utils = [g.utilization_gpu_pct for g in live if g.utilization_gpu_pct is not None]
    hot = None
    for g in live:
        if g.temperature_c is None:
            continue
        # hottest relative to its own slowdown point when known, else in absolute terms
        key = (g.temperature_c - g.temperature_slowdown_c) if g.temperature_slowdown_c is not None else g.temperature_c - 90
        if hot is None or key > hot[0]:
            hot = (key, g)
    toks = [i.generation_tokens_per_s for i in s.instances if i.generation_tokens_per_s is not None]
    worst = worst_severity(a.severity for a in s.alerts)
    return HostSummary(
        host=s.host, gpus=len(s.gpus), lost=len(s.gpus) - len(live),
        util_mean=sum(utils) / len(utils) if utils else None, util_max=max(utils) if utils else None,
        hot_index=hot[1].index if hot else None, hot_c=hot[1].temperature_c if hot else None,
        hot_slowdown_c=hot[1].temperature_slowdown_c if hot else None,
        tok_s=sum(toks) if toks else None, alerts=len(s.alerts), worst=worst,
        problem=s.nvml_error if not s.gpus else None,
        counts={sev: sum(1 for a in s.alerts if a.severity == sev) for sev in {a.severity for a in s.alerts}},
        state=s.status.state if s.status is not None else "up", since=s.status.since if s.status is not None else None,
    )
