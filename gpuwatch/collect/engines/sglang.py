"""SGLang: Prometheus ``/metrics`` (``sglang:`` series, needs ``--enable-metrics``) and
``/get_model_info``."""

from __future__ import annotations

from typing import Any

from ...model import ModelInfo
from . import names
from .base import Engine, Fetcher, Reading, wanted_names
from .vllm import _tp_pp


class SglangEngine(Engine):
    kind = "sglang"
    table = names.SGLANG
    wanted = wanted_names(names.SGLANG)

    async def poll(self, f: Fetcher, cache: dict[str, Any]) -> Reading:
        scrape, r = await self.scrape(f, cache, " (started without --enable-metrics?)")
        models = scrape.label_values(tuple(n for c in self.table.values() for n in c), names.MODEL_LABEL[self.kind])
        if not models:
            path = await f.rarely(cache, "model_path", lambda: f.json_field("/get_model_info", "model_path"))
            if path is not None:
                models = [path]
        r.models = [ModelInfo(name=m) for m in models]
        r.version = await f.rarely(cache, "version", lambda: f.json_field("/get_server_info", "version"))
        rate = r.gauges.get("generation_rate")
        steps = scrape.sum(self.table["decode_steps"])
        if steps is not None:
            # the rate gauge is live while decode steps happen, left over when they do not
            last = cache.get("decode_steps")
            cache["decode_steps"] = steps
            if rate is not None and last is not None and steps <= last:
                rate = 0.0
        else:
            rate = fresh_gauge(cache, "generation_rate", rate, f.clock(), names.SGLANG_STALE_GAUGE_S)
        r.gauges["generation_rate"] = rate
        return r

    def parallelism(self, argv: list[str]) -> tuple[str, int | None]:
        return _tp_pp(argv, names.PARALLEL_FLAGS[self.kind])



def fresh_gauge(cache: dict[str, Any], key: str, value: float | None, now: float, stale_s: float) -> float | None:
    """``value``, or 0 once it has not changed for ``stale_s`` seconds: SGLang refreshes its
    rate gauge every 40 decode steps while working and only every 30 s when idle, so a rate
    that stopped changing is a rate left over from work that has ended (see ``names.SGLANG``).
    Only for a server without a decode-step counter: a steady batch can repeat a value."""
    if value is None:
        cache.pop(key, None)
        return None
    last = cache.get(key)
    if last is None or last[0] != value:
        cache[key] = (value, now)
        return value
    return 0.0 if value and now - last[1] >= stale_s else value
