"""llama-swap: a proxy that starts and stops llama-servers on demand. ``GET /running`` lists
the models it runs and where (``names.LLAMASWAP_STARTING`` and the comment above it); the
llama-servers behind it are polled as instances of their own (``Reading.upstreams``)."""

from __future__ import annotations

from typing import Any

from ...model import ModelInfo
from . import names
from .base import Engine, FetchError, Fetcher, Reading


class LlamaSwapEngine(Engine):
    kind = "llamaswap"

    async def poll(self, f: Fetcher, cache: dict[str, Any]) -> Reading:
        data = await f.get_json("/running")
        if not isinstance(data, dict) or not isinstance(data.get("running"), list):
            raise FetchError("unexpected /running answer (no running list)", path="/running")
        r = Reading()
        starting = []
        ready = 0
        for m in data["running"]:
            if not isinstance(m, dict) or not isinstance(m.get("model"), str):
                continue
            state = str(m.get("state") or "")
            r.models.append(ModelInfo(name=m["model"]))
            if state == names.LLAMASWAP_STARTING:
                starting.append(m["model"])
            elif state == "ready":
                ready += 1
            proxy = m.get("proxy")
            if isinstance(proxy, str) and proxy.startswith(("http://", "https://")):
                r.upstreams.append((m["model"], proxy, state))
        if starting and not ready:
            r.state, r.state_detail = "loading", "starting " + ", ".join(starting)
        return r
