"""Text Generation Inference: Prometheus ``/metrics`` (``tgi_`` series) and ``/info``.

TGI counts generated tokens only when a request finishes; the live rate is rebuilt from the
per-step series (decode steps x batch size), see ``names.TGI``."""

from __future__ import annotations

from typing import Any

from ...model import ModelInfo
from . import names
from .base import Engine, Fetcher, Reading, flag_value, int_flag, wanted_names


class TgiEngine(Engine):
    kind = "tgi"
    table = names.TGI
    wanted = wanted_names(names.TGI)

    async def poll(self, f: Fetcher, cache: dict[str, Any]) -> Reading:
        scrape, r = await self.scrape(f, cache)
        steps = scrape.sum(self.table["decode_steps"])
        batch = scrape.sum(self.table["batch_size"])
        estimate = decoded_estimate(cache, steps, batch)
        if estimate is not None:
            r.counters["generation_tokens_iter"] = estimate
        info = await f.rarely(cache, "info", lambda: f.get_json("/info", optional=True))
        if isinstance(info, dict):
            model = info.get("model_id")
            if isinstance(model, str) and model:
                ctx = info.get("max_total_tokens")
                r.models = [ModelInfo(name=model, context_length=ctx if isinstance(ctx, int) else None)]
            if info.get("version") is not None:
                r.version = str(info["version"])
            limit = info.get("max_concurrent_requests")
            if isinstance(limit, int):
                r.gauges["slots_total"] = limit
        return r

    def parallelism(self, argv: list[str]) -> tuple[str, int | None]:
        # ``--num-shard N`` shards every layer over N GPUs (tensor parallel; launcher/src/main.rs)
        shards = int_flag(argv, ("--num-shard",))
        if shards and shards > 1:
            return "tensor", shards
        if flag_value(argv, ("--sharded",)) is not None or "--sharded" in argv:
            return "tensor", None
        return "single" if shards == 1 else "unknown", shards


def decoded_estimate(cache: dict[str, Any], steps: float | None, batch: float | None) -> float | None:
    """A cumulative count of generated tokens rebuilt from TGI's per-step series: every decode
    step since the last poll produced one token per request of the batch (the mean of the
    batch sizes seen at the two polls). Starts again from 0 when the step counter goes back
    (a restart), which the collector reads as a reset."""
    if steps is None or batch is None:
        cache.pop("tgi_est", None)
        return None
    last = cache.get("tgi_est")
    if last is None or steps < last[0]:
        total = 0.0
    else:
        prev_steps, prev_batch, prev_total = last
        total = prev_total + (steps - prev_steps) * (prev_batch + batch) / 2.0
    cache["tgi_est"] = (steps, batch, total)
    return total
