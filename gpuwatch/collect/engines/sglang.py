"""SGLang: Prometheus ``/metrics`` (``sglang:`` series, needs ``--enable-metrics``) and
``/get_model_info``."""

from __future__ import annotations

from typing import Any

from ...model import ModelInfo
from . import names
from .base import Engine, FetchError, Fetcher, Reading, wanted_names
from .vllm import _tp_pp


class SglangEngine(Engine):
    kind = "sglang"
    table = names.SGLANG
    wanted = wanted_names(names.SGLANG)

    async def poll(self, f: Fetcher, cache: dict[str, Any]) -> Reading:
        scrape, r = await self.scrape(f, " (started without --enable-metrics?)")
        models = scrape.label_values(tuple(n for c in self.table.values() for n in c), names.MODEL_LABEL[self.kind])
        if not models:
            if "model_path" not in cache:
                try:
                    data = await f.get_json("/get_model_info", optional=True)
                    cache["model_path"] = data.get("model_path") if isinstance(data, dict) else None
                except FetchError:
                    cache["model_path"] = None
            if isinstance(cache["model_path"], str):
                models = [cache["model_path"]]
        r.models = [ModelInfo(name=m) for m in models]
        if "version" not in cache:
            try:
                data = await f.get_json("/get_server_info", optional=True)
                v = data.get("version") if isinstance(data, dict) else None
                cache["version"] = str(v) if v is not None else None
            except FetchError:
                cache["version"] = None
        r.version = cache["version"]
        return r

    def parallelism(self, argv: list[str]) -> tuple[str, int | None]:
        return _tp_pp(argv, names.PARALLEL_FLAGS[self.kind])
