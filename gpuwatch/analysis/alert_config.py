"""Thresholds and windows of the alert rules, with their defaults, and the reader of the
``[alerts]`` table of the TOML config.

Every rule has the common keys ``enabled``, ``severity``, ``raise_after_s`` and
``clear_after_s`` (the last two fall back to the global ``[alerts]`` values) plus its own
numeric parameters listed in :data:`RULE_PARAMS`::

    [alerts]
    raise_after_s = 10
    clear_after_s = 20

    [alerts.thermal_throttle]
    margin_c = 5

    [alerts.imbalance]
    util_spread_pct = 40
    enabled = true
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..vocab import SEVERITIES


# rule kind -> {parameter: default}. Units are in the names; all parameters are numbers.
RULE_PARAMS: dict[str, dict[str, float]] = {
    "gpu_lost": {},
    "backend_down": {
        # a server that says it is loading its model is not down until it has loaded this long
        # (a 70B model from network storage takes minutes)
        "loading_limit_s": 600.0,
    },
    "thermal_throttle": {
        "margin_c": 5.0,  # alert when this close to the GPU's own slowdown temperature
        "critical_margin_c": 2.0,  # critical when this close to its shutdown temperature
    },
    "power_cap": {
        "at_limit_pct": 97.0,  # draw at or above this share of the enforced limit counts as "at the limit"
    },
    "hw_slowdown": {},
    "imbalance": {
        "window_s": 30.0,  # utilization / memory are averaged over this window
        "util_spread_pct": 30.0,  # tensor group: max - min mean utilization, percentage points
        "mem_spread_pct": 10.0,  # tensor group: max - min memory used, points of each GPU's total
        "min_busy_pct": 20.0,  # the busiest GPU must average at least this (an idle group is balanced)
        "idle_util_pct": 3.0,  # pipeline group: a GPU never above this over the window counts as not working
        "min_model_memory_gib": 1.0,  # ... if it holds at least this much memory
    },
    "replica_imbalance": {
        "window_s": 60.0,
        "min_requests_diff": 4.0,  # running+waiting, busiest minus least busy replica
        "ratio": 3.0,  # busiest >= ratio * (least busy + 1)
        # nginx pools: a member's share of the work (running requests for least_conn, requests
        # for round robin) departing from its weight's share by more than this many points ...
        "share_tolerance_pct": 15.0,
        # ... while the pool averages at least this many running requests over its window
        "min_pool_running": 2.0,
    },
    "pcie_degraded": {
        "busy_util_pct": 20.0,  # the link is judged only while the GPU is at least this busy
    },
    "cpu_offload": {
        "min_offload_pct": 1.0,
    },
    "numa_mismatch": {},
    "throughput_drop": {
        "drop_pct": 25.0,  # drop (per running request) that counts when a GPU cause is seen
        "large_drop_pct": 50.0,  # drop that counts with no cause seen
        "baseline_s": 60.0,  # the recent level: median over this window ...
        "recent_s": 10.0,  # ... before the last recent_s, whose median is compared with it
        "min_baseline_s": 5.0,  # need at least this much baseline before judging
        "min_tokens_per_s": 1.0,  # ignore instances whose baseline is below this
        "max_load_growth": 1.5,  # no judgement when running requests grew more than this factor
    },
    "ecc_errors": {
        "window_s": 120.0,  # uncorrected count rose within this window
    },
    "kv_cache_full": {
        "usage_pct": 98.0,
        "min_waiting": 1.0,
    },
    "queue_backlog": {
        "window_s": 120.0,
        "min_waiting": 5.0,  # waiting requests now
        "min_growth": 5.0,  # ... and this many more than at the start of the window
    },
    "driver_mismatch": {},
    "nvlink_fabric": {},
    "pid_namespace": {},
}

# per-rule defaults of the common keys, where they differ from the global ones
RULE_TIMING: dict[str, dict[str, float]] = {
    "gpu_lost": {"raise_after_s": 0.0},
    "backend_down": {"raise_after_s": 0.0},
    "ecc_errors": {"raise_after_s": 0.0},
    "driver_mismatch": {"raise_after_s": 0.0},
    "pid_namespace": {"raise_after_s": 0.0},
    # conditions that come and go with the load: a cap or a narrow link that binds only at
    # peaks is one episode, not an alert every load cycle
    "power_cap": {"clear_after_s": 120.0},
    "pcie_degraded": {"clear_after_s": 120.0},
    "queue_backlog": {"clear_after_s": 60.0},
}

GLOBAL_DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "raise_after_s": 10.0,
    "clear_after_s": 20.0,
    "history_size": 500,  # raised/cleared events kept for the dashboard
}

COMMON_RULE_KEYS = ("enabled", "severity", "raise_after_s", "clear_after_s")


@dataclass
class RuleConfig:
    enabled: bool = True
    severity: str | None = None  # None: the rule's own default (see rules.RULES)
    raise_after_s: float | None = None  # None: the global value
    clear_after_s: float | None = None
    params: dict[str, float] = field(default_factory=dict)


@dataclass
class AlertConfig:
    enabled: bool = True
    raise_after_s: float = 10.0
    clear_after_s: float = 20.0
    history_size: int = 500
    rules: dict[str, RuleConfig] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind, params in RULE_PARAMS.items():
            rc = self.rules.get(kind)
            if rc is None:
                rc = self.rules[kind] = RuleConfig()
                timing = RULE_TIMING.get(kind, {})
                rc.raise_after_s = timing.get("raise_after_s")
                rc.clear_after_s = timing.get("clear_after_s")
            for name, default in params.items():
                rc.params.setdefault(name, default)

    # ---- lookups the engine and the rules use -------------------------------------------
    def rule(self, kind: str) -> RuleConfig:
        return self.rules[kind]

    def param(self, kind: str, name: str) -> float:
        return self.rules[kind].params[name]

    def raise_after(self, kind: str) -> float:
        v = self.rules[kind].raise_after_s
        return self.raise_after_s if v is None else v

    def clear_after(self, kind: str) -> float:
        v = self.rules[kind].clear_after_s
        return self.clear_after_s if v is None else v

    def is_enabled(self, kind: str) -> bool:
        return self.enabled and self.rules[kind].enabled

    def max_window_s(self) -> float:
        """The longest look-back any enabled rule needs (the engine keeps this much history)."""
        longest = 0.0
        for kind, rc in self.rules.items():
            p = rc.params
            longest = max(longest, p.get("window_s", 0.0), p.get("baseline_s", 0.0) + p.get("recent_s", 0.0))
        return longest

    # ---- TOML -------------------------------------------------------------------------------
    @classmethod
    def from_toml_dict(cls, d: dict | None) -> AlertConfig:
        """Build from the ``[alerts]`` table (already parsed). Bad values and unknown keys raise
        ``ValueError`` naming the key, e.g. ``alerts.imbalance.util_spread_pct: expected a number, got 'x'``."""
        d = d or {}
        if not isinstance(d, dict):
            raise ValueError(f"alerts: expected a table, got {d!r}")
        cfg = cls()
        for key, value in d.items():
            where = f"alerts.{key}"
            if key in RULE_PARAMS:
                if not isinstance(value, dict):
                    raise ValueError(f"{where}: expected a table ([alerts.{key}]), got {value!r}")
                _apply_rule(cfg.rules[key], key, value)
            elif key == "enabled":
                cfg.enabled = _bool(where, value)
            elif key in ("raise_after_s", "clear_after_s"):
                setattr(cfg, key, _number(where, value, minimum=0.0))
            elif key == "history_size":
                cfg.history_size = int(_number(where, value, minimum=1.0, integer=True))
            else:
                known = ", ".join(sorted([*GLOBAL_DEFAULTS, *RULE_PARAMS]))
                raise ValueError(f"{where}: unknown key (known: {known})")
        return cfg


def _apply_rule(rc: RuleConfig, kind: str, table: dict) -> None:
    params = RULE_PARAMS[kind]
    for key, value in table.items():
        where = f"alerts.{kind}.{key}"
        if key == "enabled":
            rc.enabled = _bool(where, value)
        elif key == "severity":
            if value not in SEVERITIES:
                raise ValueError(f"{where}: expected one of {', '.join(SEVERITIES)}, got {value!r}")
            rc.severity = value
        elif key in ("raise_after_s", "clear_after_s"):
            setattr(rc, key, _number(where, value, minimum=0.0))
        elif key in params:
            rc.params[key] = _number(where, value)
        else:
            known = ", ".join([*COMMON_RULE_KEYS, *params])
            raise ValueError(f"{where}: unknown key (known: {known})")


def _number(where: str, value: Any, minimum: float | None = None, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    if integer and value != int(value):
        raise ValueError(f"{where}: expected a whole number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{where}: expected a number >= {minimum:g}, got {value!r}")
    return float(value)


def _bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{where}: expected true or false, got {value!r}")
    return value
