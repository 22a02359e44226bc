"""nginx upstreams: the replica groups an operator puts in front of local inference servers.

The configuration (``/etc/nginx/nginx.conf`` and everything it includes, ``--nginx-conf PATH``
or ``nginx_conf`` in the config file) is read with crossplane, the nginx config parser kept by
NGINX Inc. (it follows ``include`` globs and gives each directive its file and line), never
with regexes. Every ``upstream`` block becomes a :class:`~gpuwatch.model.Pool` with its members;
which watched instance each member is, and the shares of work, are analysis
(``gpuwatch/analysis/pools.py``).

The files are parsed again only when one of them (or a folder an ``include`` globbed) changed,
looked at no more often than every ``recheck_s``.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field

from ..model import Pool, PoolMember

DEFAULT_NGINX_CONF = "/etc/nginx/nginx.conf"

# Balancing directives inside an `upstream` block -> the method name gpuwatch reports.
# Source: nginx docs, ngx_http_upstream_module (https://nginx.org/en/docs/http/ngx_http_upstream_module.html):
# without one of these the method is weighted round robin; `least_time` and `sticky` are NGINX Plus.
METHODS = {
    "least_conn": "least_conn",
    "ip_hash": "ip_hash",
    "hash": "hash",
    "random": "random",
    "least_time": "least_time",
    "ntlm": "ntlm",
    "sticky": "sticky",
}
# Methods where a member's weight sets its share of the work (ip_hash/hash/sticky pin clients,
# so their shares follow the clients, not the weights). Source: same page, `weight=` and each method.
WEIGHTED_METHODS = frozenset({"round_robin", "least_conn", "random", "least_time"})

# `server` parameters and their defaults. Source: same page, directive `server`:
# weight=1, max_fails=1, fail_timeout=10s; `backup` and `down` are flags.
SERVER_DEFAULTS = {"weight": 1, "max_fails": 1, "fail_timeout": 10.0}

# nginx time units (https://nginx.org/en/docs/syntax.html): a bare number is seconds
_TIME_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0,
               "M": 2592000.0, "y": 31536000.0}


class NginxConfigError(Exception):
    """The configuration could not be read (worded for one line)."""


def nginx_seconds(text: str) -> float | None:
    """``30s``, ``1m30s``, ``500ms``, ``10`` -> seconds; None when not an nginx time."""
    total, num = 0.0, ""
    i = 0
    if not text:
        return None
    while i < len(text):
        ch = text[i]
        if ch.isdigit():
            num += ch
            i += 1
            continue
        unit = text[i:i + 2] if text[i:i + 2] == "ms" else ch
        if not num or unit not in _TIME_UNITS:
            return None
        total += int(num) * _TIME_UNITS[unit]
        num = ""
        i += len(unit)
    if num:
        total += int(num)
    return total


def member_url(address: str, scheme: str = "http") -> str:
    """A `server` address as a URL: ``127.0.0.1:11434`` -> ``http://127.0.0.1:11434``; a port-less
    host gets nginx's default 80; ``unix:/run/x.sock`` stays as it is."""
    if address.startswith("unix:"):
        return address
    host = address
    if host.startswith("["):  # [::1]:11434
        end = host.find("]")
        port = host[end + 2:] if host[end + 1:end + 2] == ":" else ""
        host = host[:end + 1]
    elif host.count(":") == 1:
        host, _, port = host.partition(":")
    else:
        port = ""
    return f"{scheme}://{host}:{port or 80}"


def _int(value: str, default: int) -> int:
    try:
        return int(value)
    except ValueError:
        return default


def _member(args: list[str], scheme: str) -> PoolMember | None:
    if not args:
        return None
    m = PoolMember(url=member_url(args[0], scheme), weight=SERVER_DEFAULTS["weight"],
                   max_fails=SERVER_DEFAULTS["max_fails"], fail_timeout_s=SERVER_DEFAULTS["fail_timeout"])
    for arg in args[1:]:
        key, eq, value = arg.partition("=")
        if not eq:
            if key == "backup":
                m.backup = True
            elif key == "down":
                m.down = True
            continue
        if key == "weight":
            m.weight = max(1, _int(value, 1))
        elif key == "max_fails":
            m.max_fails = max(0, _int(value, 1))
        elif key == "fail_timeout":
            secs = nginx_seconds(value)
            if secs is not None:
                m.fail_timeout_s = secs
    return m


def _walk(directives: list[dict]):
    for d in directives:
        yield d
        if d.get("block"):
            yield from _walk(d["block"])


def pools_from_payload(payload: dict) -> list[Pool]:
    """The upstreams of a crossplane payload (parsed with ``combine=True``), in file order."""
    parsed = payload["config"][0]["parsed"] if payload.get("config") else []
    https = set()  # upstream names some proxy_pass reaches over https
    for d in _walk(parsed):
        if d["directive"] == "proxy_pass" and d.get("args") and d["args"][0].startswith("https://"):
            https.add(d["args"][0][len("https://"):].split("/", 1)[0])
    pools = []
    for d in _walk(parsed):
        if d["directive"] != "upstream" or not d.get("args"):
            continue
        name = d["args"][0]
        scheme = "https" if name in https else "http"
        pool = Pool(name=name, source=f"{d.get('file', '?')}:{d.get('line', '?')}")
        for inner in d.get("block") or ():
            directive = inner["directive"]
            if directive in METHODS:
                pool.method = METHODS[directive]
            elif directive == "server":
                m = _member(inner.get("args") or [], scheme)
                if m is not None:
                    pool.members.append(m)
        if pool.members:
            pools.append(pool)
    return pools


def read_nginx_conf(path: str) -> tuple[list[Pool], list[str], str | None]:
    """(pools, files read, first error or None). A file that cannot be read or parsed is an
    error naming it; what could be parsed is still returned."""
    import crossplane

    try:
        payload = crossplane.parse(path, combine=True, catch_errors=True, check_ctx=False, check_args=False)
    except Exception as e:  # crossplane raises on a missing main file in some versions
        return [], [path], f"nginx config {path}: {e}"
    files = {c["file"] for c in payload.get("config", ())} | {path}
    for c in payload.get("config", ()):
        files.update(d["file"] for d in _walk(c.get("parsed") or ()) if "file" in d)
    files = sorted(files)
    error = None
    if payload.get("errors"):
        e = payload["errors"][0]
        where = f"{e.get('file', path)}" + (f":{e['line']}" if e.get("line") else "")
        error = f"nginx config {where}: {e.get('error', 'unreadable')}"
    try:
        pools = pools_from_payload(payload)
    except (KeyError, IndexError, TypeError):
        return [], files, error or f"nginx config {path}: unexpected structure"
    return pools, files, error


def _stamp(paths: list[str]) -> tuple:
    """mtimes of the files and of their folders (a new file an include glob picks up)."""
    out = []
    for p in sorted(set(paths) | {os.path.dirname(p) for p in paths}):
        try:
            out.append((p, os.stat(p).st_mtime_ns))
        except OSError:
            out.append((p, None))
    return tuple(out)


@dataclass
class NginxPools:
    """Collector of the pools an nginx configuration defines. ``collect()`` returns fresh
    copies (analysis annotates them per snapshot). ``required``: a missing file is an error
    (an explicit ``--nginx-conf``) rather than "no nginx here"."""

    path: str = DEFAULT_NGINX_CONF
    required: bool = False
    recheck_s: float = 10.0
    clock: object = time.monotonic
    routes: object = None  # MeterRoutes: members that are meter routes stand for their upstreams
    error: str | None = None
    _pools: list[Pool] = field(default_factory=list)
    _mtimes: tuple | None = None
    _files: list[str] = field(default_factory=list)
    _checked: float | None = None

    def collect(self) -> list[Pool]:
        now = self.clock()
        if self._checked is None or now - self._checked >= self.recheck_s:
            self._checked = now
            self._refresh()
        return copy.deepcopy(self._pools)

    def server_urls(self, pools: list[Pool]) -> list[str]:
        """Where the pools' servers listen (for the instance collector to look there)."""
        return probe_urls(pools, self.routes() if self.routes is not None else {})

    def _refresh(self) -> None:
        if not os.path.exists(self.path):
            self._pools, self._mtimes = [], None
            self.error = f"nginx config {self.path} does not exist" if self.required else None
            return
        stamp = _stamp(self._files or [self.path])
        if stamp == self._mtimes:
            return
        self._pools, self._files, self.error = read_nginx_conf(self.path)
        self._mtimes = _stamp(self._files)


# ---- meter routes: an upstream member may be a `gpuwatch meter` in front of an instance ----------
def meter_routes_in(name: str | None, argv: list[str]) -> dict[str, str]:
    """{LISTEN URL: UPSTREAM URL} from a ``gpuwatch meter --route LISTEN=UPSTREAM ...`` command
    line (the meter's own parser); {} for any other process."""
    from ..meter.routes import parse_route
    from .meters import is_meter_process

    if not is_meter_process(name, argv):
        return {}
    out = {}
    texts = [b for a, b in zip(argv, argv[1:]) if a == "--route"]
    texts += [a[len("--route="):] for a in argv if a.startswith("--route=")]
    for text in texts:
        try:
            r = parse_route(text)
        except ValueError:
            continue
        out[f"http://{r.host}:{r.port}"] = r.upstream
    return out


@dataclass
class MeterRoutes:
    """The routes of the meters running on this box, from their command lines (looked at every
    ``recheck_s``). Called by the pool analysis to resolve members that are meter routes."""

    table: object
    recheck_s: float = 10.0
    clock: object = time.monotonic
    _routes: dict = field(default_factory=dict)
    _checked: float | None = None

    def __call__(self) -> dict[str, str]:
        now = self.clock()
        if self._checked is None or now - self._checked >= self.recheck_s:
            self._checked = now
            routes = {}
            try:
                pids = {lst.pid for lst in self.table.listeners()}
                for pid in pids:
                    info = self.table.info(pid)
                    if info is not None:
                        routes.update(meter_routes_in(info.name, info.cmdline))
            except Exception:  # the process table is best effort
                pass
            self._routes = routes
        return dict(self._routes)


def probe_urls(pools: list[Pool], routes: dict[str, str]) -> list[str]:
    """Where the servers of the pools' members are: the member's own address, or the upstream
    of the meter route it is (``routes``: {LISTEN URL: UPSTREAM URL})."""
    from .instances import url_key

    by_key = {url_key(k): v for k, v in routes.items()}
    out = []
    for pool in pools:
        for m in pool.members:
            if m.url.startswith("unix:"):
                continue
            out.append(by_key.get(url_key(m.url), m.url))
    return out
