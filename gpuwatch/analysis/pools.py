"""Replica pools: which watched instance each nginx upstream member is, and how the work
spreads over the members.

:class:`PoolAnalysis` runs on every snapshot (a pipeline analyzer). It resolves each member's
address to an instance, directly (``127.0.0.1:11434`` is the Ollama at that URL) or through a
``gpuwatch meter`` route (``127.0.0.1:11534`` is a meter listening for ``http://127.0.0.1:11434``),
drops upstreams with no watched member (a web app's upstream is not a replica pool), and
computes each member's share of requests, running requests and generated tokens over the last
``window_s`` seconds against the share its weight asks for. It keeps that window itself, so a
one-shot snapshot, the recorder and the dashboard see the same figures.

Works on model objects only.
"""

from __future__ import annotations

import collections
import datetime as _dt
from typing import Callable, Iterable

from ..model import Instance, Pool, PoolMember, Snapshot

DEFAULT_WINDOW_S = 60.0

# prefixes that name where a model came from, not which model it is: Ollama's registry
# (`ollama list` shows `registry.ollama.ai/library/llama3:latest` as `llama3:latest`, Ollama docs,
# api.md "Model names"), Hugging Face pulls through Ollama (`hf.co/org/repo:quant`)
_SOURCE_PREFIXES = ("registry.ollama.ai/", "hf.co/", "huggingface.co/", "library/")
_FILE_SUFFIXES = (".gguf", ".safetensors", ".bin")


def model_key(name: str | None) -> str | None:
    """One spelling for replicas of one model: ``Qwen/Qwen2.5-7B-Instruct`` and
    ``qwen2.5-7b-instruct`` (org dropped), ``llama3`` and ``llama3:latest`` (Ollama's default
    tag), ``/models/x.gguf`` and ``x`` (a llama.cpp file). A tag other than ``latest`` stays:
    ``llama3:8b-q4_0`` and ``llama3:8b-q8_0`` are different quantisations."""
    if not name:
        return None
    n = name.strip().lower()
    for prefix in _SOURCE_PREFIXES:
        if n.startswith(prefix):
            n = n[len(prefix):]
    n = n.rsplit("/", 1)[-1]  # org/model, a path
    if n.endswith(":latest"):
        n = n[: -len(":latest")]
    for suffix in _FILE_SUFFIXES:
        if n.endswith(suffix):
            n = n[: -len(suffix)]
    return n or None


def instance_model_key(inst: Instance) -> str | None:
    return model_key(inst.models[0].name) if inst.models else None


def _url_key(url: str):
    from ..collect.instances import url_key  # the collector's identity of a server

    try:
        return url_key(url)
    except ValueError:
        return None


def _snapshot_seconds(snap: Snapshot) -> float:
    try:
        return _dt.datetime.fromisoformat(snap.time.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return 0.0


def weight_shares(members: Iterable[PoolMember]) -> dict[str, float]:
    """Share of the work each member's weight asks for, among the members that take work
    (not `down`, not `backup`: a backup takes work only when every primary has failed)."""
    active = [m for m in members if not m.down and not m.backup]
    total = sum(m.weight for m in active)
    return {m.url: (m.weight / total if total else 0.0) for m in active}


class PoolAnalysis:
    """Pipeline analyzer: resolves pools and fills their shares. ``routes()`` gives the meter
    routes known now as {LISTEN URL: UPSTREAM URL}."""

    def __init__(self, window_s: float = DEFAULT_WINDOW_S,
                 routes: Callable[[], dict[str, str]] | None = None) -> None:
        self.window_s = float(window_s)
        self.routes = routes or (lambda: {})
        # (pool name, member url) -> deque of (t, running, tok/s, requests/s); None: unknown
        self._seen: dict[tuple[str, str], collections.deque] = {}

    def __call__(self, snap: Snapshot) -> Snapshot:
        if not snap.pools:
            return snap
        by_key = {}
        for inst in snap.instances:
            k = _url_key(inst.url)
            if k is not None:
                by_key.setdefault(k, inst)
        routes = {}
        for inst in snap.instances:  # the meter routes the collector saw forward to each instance
            for listen in inst.meter_routes:
                lk = _url_key(listen)
                if lk is not None:
                    routes[lk] = inst.url
        for listen, upstream in (self.routes() or {}).items():
            lk = _url_key(listen)
            if lk is not None:
                routes[lk] = upstream
        kept = []
        for pool in snap.pools:
            insts = {}
            for m in pool.members:
                inst = self._resolve(m, by_key, routes)
                if inst is not None:
                    insts[m.url] = inst
            if not insts:
                continue
            keys = {instance_model_key(i) for i in insts.values()}
            first = next(iter(insts.values()))
            pool.model = first.models[0].name if len(keys) == 1 and None not in keys else None
            shares = weight_shares(pool.members)
            for m in pool.members:
                m.weight_share = shares.get(m.url, 0.0)
            self._shares(pool, insts, _snapshot_seconds(snap))
            kept.append(pool)
        snap.pools = kept
        live = {(p.name, m.url) for p in kept for m in p.members}
        for k in [k for k in self._seen if k not in live]:
            del self._seen[k]
        return snap

    @staticmethod
    def _resolve(m: PoolMember, by_key: dict, routes: dict) -> Instance | None:
        k = _url_key(m.url) if not m.url.startswith("unix:") else None
        if k is None:
            return None
        inst = by_key.get(k)
        if k in routes:
            m.via = m.url
            if inst is None:
                up = _url_key(routes[k])
                inst = by_key.get(up) if up is not None else None
        if inst is not None:
            m.instance = inst.name
        return inst

    def _shares(self, pool: Pool, insts: dict[str, Instance], t: float) -> None:
        pool.window_s = self.window_s
        means: dict[str, list[float | None]] = {}
        for m in pool.members:
            dq = self._seen.setdefault((pool.name, m.url), collections.deque())
            inst = insts.get(m.url)
            if inst is not None:
                if inst.status == "up":
                    dq.append((t, inst.requests_running, inst.generation_tokens_per_s, inst.requests_per_s))
                else:  # a member that is down does no work
                    dq.append((t, 0.0, 0.0, 0.0))
            while dq and dq[0][0] <= t - self.window_s:
                dq.popleft()
            means[m.url] = [_mean(v[i] for v in dq) for i in (1, 2, 3)]
        for i, attr in enumerate(("running_share", "token_share", "request_share")):
            known = {u: v[i] for u, v in means.items() if v[i] is not None}
            total = sum(known.values())
            for m in pool.members:
                value = known.get(m.url)
                setattr(m, attr, None if value is None or total <= 0 else value / total)


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None



def is_loopback_url(url: str) -> bool:
    k = _url_key(url)
    return k is not None and k[0] == "127.0.0.1"


# ---- the pool half of the replica_imbalance rule (analysis/rules.py registers it) ----------
def _names(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def pool_alerts(ctx) -> list:
    """Alerts about the snapshot's pools: a listed replica that is down, shares of work that
    depart from the weights under load, every replica on one GPU. ``ctx`` is the rule context
    of ``replica_imbalance`` (analysis/rules.py)."""
    from ..collect.nginx import WEIGHTED_METHODS

    out = []
    snap = ctx.snapshot
    insts = {i.name: i for i in snap.instances}
    for pool in snap.pools:
        primaries = [m for m in pool.members if not m.down and not m.backup]
        subject = f"pool {pool.name}"
        # 1. a replica nginx lists but that does not answer
        down = []
        for m in primaries:
            inst = insts.get(m.instance) if m.instance else None
            if inst is not None and inst.status != "up":
                down.append((m, f"{inst.name} ({inst.status}: {inst.error or 'not answering'})"))
            elif inst is None and is_loopback_url(m.url):
                where = "behind this meter route" if m.via else "there"
                down.append((m, f"{m.url} (no inference server answers {where})"))
        if down and primaries:
            up = len(primaries) - len(down)
            fails = {(m.max_fails, m.fail_timeout_s) for m, _ in down}
            mf, ft = fails.pop() if len(fails) == 1 else (down[0][0].max_fails, down[0][0].fail_timeout_s)
            out.append(ctx.alert(subject,
                f"pool {pool.name} runs on {up} of {len(primaries)} replicas: {_names([d for _, d in down])} "
                f"{'is' if len(down) == 1 else 'are'} down while nginx still lists {'it' if len(down) == 1 else 'them'} "
                f"(each failure costs a client a retry until max_fails={mf} in {ft:g} s marks it failed); "
                f"restart it, or mark it `down` in {pool.source}",
                severity="critical" if up == 0 else None, key=f"replica_imbalance:{subject}:down"))
        # 2. shares of work against the weights, under load
        ups = [m for m in primaries if m.instance and insts.get(m.instance) is not None
               and insts[m.instance].status == "up"]
        if pool.method in WEIGHTED_METHODS and len(ups) >= 2:
            out += _share_alert(ctx, pool, ups, insts, subject)
        # 3. every replica on the same GPU(s)
        gpu_sets = {tuple(insts[m.instance].gpus) for m in ups}
        if len(ups) >= 2 and len(gpu_sets) == 1:
            (gpus,) = gpu_sets
            others = [g.index for g in snap.gpus if g.index not in gpus and not g.lost]
            if len(gpus) == 1 and others:
                out.append(ctx.alert(subject,
                    f"pool {pool.name}: all {len(ups)} replicas run on GPU {gpus[0]} while GPU "
                    f"{', '.join(map(str, others))} {'holds' if len(others) == 1 else 'hold'} none of them; "
                    f"give each instance its own GPU with CUDA_VISIBLE_DEVICES (and CUDA_DEVICE_ORDER=PCI_BUS_ID)",
                    key=f"replica_imbalance:{subject}:one-gpu"))
    return out


def _share_alert(ctx, pool: Pool, ups: list[PoolMember], insts: dict, subject: str) -> list:
    # least_conn evens out connections per weight: compare running requests; round robin and
    # random hand out requests per weight: compare requests finished (running when not counted)
    basis = "running_share" if pool.method == "least_conn" else "request_share"
    if any(getattr(m, basis) is None for m in ups):
        basis = "running_share" if basis == "request_share" else "request_share"
    if any(getattr(m, basis) is None for m in ups):
        return []
    window = pool.window_s or ctx.p("window_s")
    load = 0.0
    for m in ups:
        vals = ctx.instance_values(m.instance, lambda i: i.requests_running, window)
        load += sum(v for _, v in vals) / len(vals) if vals else 0.0
    if load < ctx.p("min_pool_running"):
        return []  # an idle pool is balanced whatever its shares
    got_total = sum(getattr(m, basis) for m in ups)
    weight_total = sum(m.weight for m in ups)
    if got_total <= 0 or weight_total <= 0:
        return []
    worst, worst_diff = None, 0.0
    for m in ups:
        diff = getattr(m, basis) / got_total - m.weight / weight_total
        if abs(diff) > abs(worst_diff):
            worst, worst_diff = m, diff
    if worst is None or abs(worst_diff) * 100 < ctx.p("share_tolerance_pct"):
        return []
    if basis == "running_share" and abs(worst_diff) * load < 1.0:
        # least_conn (nginx's ngx_http_upstream_module: the server with the fewest active
        # connections, taking weights into account) hands out whole requests: at 3 running over
        # weights 2:1:1 it runs 1/1/1, each a third, as close to 50/25/25 % as 3 requests get.
        # A share off by less than one request is nginx doing its job (a false alarm seen in the
        # e2e test's first tick, while its clients were still connecting)
        return []
    got = getattr(worst, basis) / got_total
    want = worst.weight / weight_total
    what = "running requests" if basis == "running_share" else "requests"
    inst = insts[worst.instance]
    tps = "" if inst.generation_tokens_per_s is None else f", {inst.generation_tokens_per_s:.0f} tok/s"
    if worst_diff < 0:
        step = (f"nginx may be marking it failed (max_fails={worst.max_fails} in {worst.fail_timeout_s:g} s: "
                f"look for 'upstream … failed' in the error log) or it answers slower than the others")
    else:
        step = "the other replicas may be refusing or failing requests, or answering faster: compare their tok/s"
    return [ctx.alert(subject,
        f"pool {pool.name} ({pool.method}): {worst.instance} takes {_pct(got)} of the {what} "
        f"(weight {worst.weight} of {weight_total}: {_pct(want)}) over {window:.0f} s with "
        f"{load:.1f} running{tps}; {step}", key=f"replica_imbalance:{subject}:shares")]
