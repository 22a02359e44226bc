"""llama.cpp ``llama-server``: ``/metrics`` (with ``--metrics``), ``/props``, and ``/slots`` when
there are no metrics."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from ...model import ModelInfo
from . import names
from .base import (Engine, FetchError, Fetcher, Reading, flag_value, prometheus_reading, scrape_off_loop,
                   wanted_names)


class LlamacppEngine(Engine):
    kind = "llamacpp"
    table = names.LLAMACPP
    wanted = wanted_names(names.LLAMACPP)

    async def poll(self, f: Fetcher, cache: dict[str, Any]) -> Reading:
        # /props (model, context, build, slot count) rarely changes; /metrics every tick
        metrics, props = await asyncio.gather(
            f.get_text("/metrics", optional=True),
            f.rarely(cache, "props", lambda: f.get_json("/props", optional=True)), return_exceptions=True)
        for part in (metrics, props):
            if isinstance(part, BaseException):
                raise part
        if metrics is not None:
            scrape = await scrape_off_loop(metrics, wanted=self.wanted, series=cache.setdefault("series", {}))
            r = prometheus_reading(scrape, self.table)
            # llamacpp:requests_processing counts the slots that are processing: /slots adds nothing
            r.gauges["slots_busy"] = r.gauges.get("requests_running")
        else:
            r = Reading()  # started without --metrics: model and slots only
        if isinstance(props, dict):
            model_path = props.get("model_path") or props.get("model_alias")
            settings = props.get("default_generation_settings")
            n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
            if isinstance(model_path, str) and model_path:
                r.models = [ModelInfo(name=os.path.basename(model_path) or model_path,
                                      context_length=n_ctx if isinstance(n_ctx, int) else None)]
            build = props.get("build_info")
            r.version = str(build) if build else None
            total = props.get("total_slots")
            if isinstance(total, int):
                r.gauges["slots_total"] = total
        elif metrics is None:
            raise FetchError("neither /metrics nor /props answered", path="/props")
        if metrics is None:
            slots = await _optional(f.get_json("/slots", optional=True))
            if isinstance(slots, list):
                busy = sum(1 for s in slots if isinstance(s, dict) and (s.get("is_processing") or s.get("state") == 1))
                r.gauges["slots_busy"] = busy
                r.gauges["slots_total"] = len(slots)
        return r

    def parallelism(self, argv: list[str]) -> tuple[str, int | None]:
        mode = flag_value(argv, names.LLAMACPP_SPLIT_FLAGS)
        if mode is None:
            return "pipeline", None  # layer split is the default; single when it turns out to be one GPU
        return names.LLAMACPP_SPLIT_MODES.get(mode.lower(), "unknown"), None


async def _optional(coro):
    """/slots is disabled with --no-slots and may answer 501/404 or an error: not fatal."""
    try:
        return await coro
    except FetchError:
        return None
