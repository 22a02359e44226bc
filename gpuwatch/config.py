"""The TOML config file (``~/.config/gpuwatch/config.toml`` or ``--config PATH``).

```toml
interval = 1.0
theme = "gpuwatch"
discover = true
nginx_conf = "/etc/nginx/nginx.conf"   # upstreams of watched instances are shown as pools

[[backends]]
url = "http://127.0.0.1:8000"
name = "vllm-main"            # optional
api_key_env = "VLLM_API_KEY"  # optional: the key is read from this variable, never stored

[alerts]                      # thresholds, see docs/ALERTS.md
raise_after_s = 10

[prometheus]
url = "http://127.0.0.1:9090"

[[meters]]                    # a `gpuwatch meter` not found by itself (docs/METER.md)
url = "http://127.0.0.1:9836"
```
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .analysis.alert_config import AlertConfig
from .collect.targets import BackendConfig
from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_PATH = Path("~/.config/gpuwatch/config.toml")


@dataclass
class Config:
    """The config file as written (see :class:`Settings` for what gpuwatch runs with)."""

    path: Path | None = None
    interval: float = 1.0
    theme: str | None = None
    discover: bool = True
    backends: list[BackendConfig] = field(default_factory=list)
    alerts: dict = field(default_factory=dict)
    prometheus_url: str | None = None
    prometheus_timeout_s: float = 3.0
    nginx_conf: str | None = None  # nginx config whose upstreams are replica pools


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME")
    return Path(base) / "gpuwatch" if base else Path.home() / ".config" / "gpuwatch"


def _expect(table: dict, key: str, types, where: str):
    types = types if isinstance(types, tuple) else (types,)
    value = table[key]
    if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        names = " or ".join(t.__name__ for t in types)
        raise ConfigError(f"{where}{key}: expected {names}, got {value!r}")
    return value


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Read the config. A missing default file is an empty config; a missing explicit file,
    bad TOML or a wrong value raises ConfigError with the file and key named."""
    explicit = path is not None
    p = Path(path).expanduser() if explicit else config_dir() / "config.toml"
    if not p.exists():
        if explicit:
            raise ConfigError(f"config file {p} does not exist")
        return Config()
    from .userfiles import read_small_file
    try:
        data = tomllib.loads(read_small_file(p).decode("utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {p} is not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {p} is not UTF-8 text") from None
    except ValueError as e:  # a FIFO, a device, far too big
        raise ConfigError(f"config file {e}") from None
    except OSError as e:
        raise ConfigError(f"config file {p} cannot be read: {e.strerror}") from None
    try:
        return parse_config(data, p)
    except ConfigError as e:
        raise ConfigError(f"config file {p}: {e}") from None


def _checked_url(url: str, where: str) -> str:
    from .usage import url_problem
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}url: {url!r} must start with http:// or https://")
    problem = url_problem(url)
    if problem:
        raise ConfigError(f"{where}url: {problem}")
    return url.rstrip("/")


KNOWN_TOP = {"interval", "theme", "discover", "backends", "alerts", "prometheus", "meters", "nginx_conf"}


def parse_config(data: dict, path: Path | None = None) -> Config:
    cfg = Config(path=path)
    unknown = set(data) - KNOWN_TOP
    if unknown:
        raise ConfigError(f"unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(KNOWN_TOP))})")
    if "interval" in data:
        cfg.interval = float(_expect(data, "interval", (int, float), ""))
        if not 0.1 <= cfg.interval <= 3600:
            raise ConfigError(f"interval: {cfg.interval} is outside 0.1..3600 seconds")
    if "theme" in data:
        cfg.theme = _expect(data, "theme", str, "")
    if "discover" in data:
        cfg.discover = _expect(data, "discover", bool, "")
    if "nginx_conf" in data:
        cfg.nginx_conf = os.path.expanduser(_expect(data, "nginx_conf", str, ""))
    backends = data.get("backends", [])
    if not isinstance(backends, list):
        raise ConfigError("backends: expected an array of tables ([[backends]])")
    for i, b in enumerate(backends):
        where = f"backends[{i}]."
        if not isinstance(b, dict) or "url" not in b:
            raise ConfigError(f"backends[{i}]: each backend needs a url")
        extra = set(b) - {"url", "name", "api_key_env", "kind"}
        if extra:
            raise ConfigError(f"{where}{sorted(extra)[0]}: unknown key (known: url, name, api_key_env, kind)")
        url = _checked_url(_expect(b, "url", str, where), where)
        cfg.backends.append(BackendConfig(
            url=url.rstrip("/"),
            name=_expect(b, "name", str, where) if "name" in b else None,
            api_key_env=_expect(b, "api_key_env", str, where) if "api_key_env" in b else None,
            kind=_expect(b, "kind", str, where) if "kind" in b else None,
        ))
    _parse_meters(data.get("meters", []), cfg)
    alerts = data.get("alerts", {})
    if not isinstance(alerts, dict):
        raise ConfigError("alerts: expected a table ([alerts])")
    cfg.alerts = alerts
    prom = data.get("prometheus", {})
    if not isinstance(prom, dict):
        raise ConfigError("prometheus: expected a table ([prometheus])")
    if "url" in prom:
        cfg.prometheus_url = _checked_url(_expect(prom, "url", str, "prometheus."), "prometheus.")
    if "timeout_s" in prom:
        cfg.prometheus_timeout_s = float(_expect(prom, "timeout_s", (int, float), "prometheus."))
        if not 0.1 <= cfg.prometheus_timeout_s <= 600:  # NaN and inf fail this too
            raise ConfigError(f"prometheus.timeout_s: {cfg.prometheus_timeout_s} is outside 0.1..600 seconds")
    return cfg


@dataclass(frozen=True)
class Settings:
    """What gpuwatch runs with: the config file merged with the command line (which wins),
    validated once. Built by :func:`load_settings` and handed to every front end."""

    interval: float = 1.0
    theme: str | None = None
    discover: bool = True
    backends: tuple[BackendConfig, ...] = ()
    alerts: AlertConfig = field(default_factory=AlertConfig)
    prometheus_url: str | None = None
    prometheus_timeout_s: float = 3.0
    demo: str | None = None  # a simulated scenario (``--demo``), None for the real box
    config_path: Path | None = None
    nginx_conf: str | None = None  # an nginx config to read pools from (None: the default, if any)


def load_settings(config_path: str | os.PathLike | None = None, *, interval: float | None = None,
                  theme: str | None = None, backends=(), discover: bool = True, demo: str | None = None,
                  prometheus_url: str | None = None, nginx_conf: str | None = None) -> Settings:
    """The config file (``config_path`` or the default one) with the given overrides. A bad
    file or value raises :class:`ConfigError` with a one-line message naming the file and key."""
    cfg = load_config(config_path)
    try:  # thresholds are checked now, so a typo is a one-line message at start, not later
        alerts = AlertConfig.from_toml_dict(cfg.alerts or {})
    except ValueError as e:
        raise ConfigError(f"config file {cfg.path}: {e}") from None
    extra = tuple(b if isinstance(b, BackendConfig) else BackendConfig(url=b) for b in backends)
    nginx_conf = nginx_conf or cfg.nginx_conf
    if nginx_conf and not os.path.exists(nginx_conf):
        raise ConfigError(f"nginx config {nginx_conf} does not exist")
    return Settings(
        interval=interval or cfg.interval,
        theme=theme or cfg.theme,
        discover=cfg.discover and discover,
        backends=tuple(cfg.backends) + extra,
        alerts=alerts,
        prometheus_url=prometheus_url or cfg.prometheus_url,
        prometheus_timeout_s=cfg.prometheus_timeout_s,
        demo=demo,
        config_path=cfg.path,
        nginx_conf=nginx_conf,
    )


def _parse_meters(meters, cfg: Config) -> None:
    """``[[meters]] url = ...``: kept as backends of kind "meter" (the instance collector reads
    the meter and attaches its figures to the servers it fronts)."""
    if not isinstance(meters, list):
        raise ConfigError("meters: expected an array of tables ([[meters]])")
    for i, m in enumerate(meters):
        where = f"meters[{i}]."
        if not isinstance(m, dict) or "url" not in m:
            raise ConfigError(f"meters[{i}]: each meter needs a url (its --metrics address)")
        extra = set(m) - {"url"}
        if extra:
            raise ConfigError(f"{where}{sorted(extra)[0]}: unknown key (known: url)")
        url = _expect(m, "url", str, where)
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}url: {url!r} must start with http:// or https://")
        cfg.backends.append(BackendConfig(url=url.rstrip("/"), kind="meter"))
