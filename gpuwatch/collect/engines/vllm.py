"""vLLM: Prometheus ``/metrics`` (``vllm:`` series labelled by ``model_name``) and ``/version``."""

from __future__ import annotations

from typing import Any

from ...model import ModelInfo
from . import names
from .base import Engine, Fetcher, Reading, int_flag, wanted_names


class VllmEngine(Engine):
    kind = "vllm"
    table = names.VLLM
    wanted = wanted_names(names.VLLM)

    async def poll(self, f: Fetcher, cache: dict[str, Any]) -> Reading:
        scrape, r = await self.scrape(f, cache)
        r.models = [ModelInfo(name=m) for m in scrape.label_values(
            tuple(n for c in self.table.values() for n in c), names.MODEL_LABEL[self.kind])]
        r.version = await f.rarely(cache, "version", lambda: f.json_field("/version", "version"))
        return r

    def parallelism(self, argv: list[str]) -> tuple[str, int | None]:
        return _tp_pp(argv, names.PARALLEL_FLAGS[self.kind])


def _tp_pp(argv: list[str], flags: dict[str, tuple[str, ...]]) -> tuple[str, int | None]:
    tp = int_flag(argv, flags["tensor"]) or 1
    pp = int_flag(argv, flags["pipeline"]) or 1
    if tp > 1:
        return "tensor", tp * pp
    if pp > 1:
        return "pipeline", pp
    return "single", 1

