"""vLLM: Prometheus ``/metrics`` (``vllm:`` series labelled by ``model_name``) and ``/version``.
When each series moves (per engine step) and what sleep mode looks like: ``names.VLLM``."""

from __future__ import annotations

from typing import Any

from ...model import ModelInfo
from . import names
from .base import Engine, Fetcher, PromScrape, Reading, int_flag, wanted_names


class VllmEngine(Engine):
    kind = "vllm"
    table = names.VLLM
    wanted = wanted_names(names.VLLM) | {names.VLLM_SLEEP_GAUGE}

    async def poll(self, f: Fetcher, cache: dict[str, Any]) -> Reading:
        scrape, r = await self.scrape(f, cache)
        r.models = [ModelInfo(name=m) for m in scrape.label_values(
            tuple(n for c in self.table.values() for n in c), names.MODEL_LABEL[self.kind])]
        r.version = await f.rarely(cache, "version", lambda: f.json_field("/version", "version"))
        r.state, r.state_detail = sleep_state(scrape)
        return r

    def parallelism(self, argv: list[str]) -> tuple[str, int | None]:
        return _tp_pp(argv, names.PARALLEL_FLAGS[self.kind])


def sleep_state(scrape: PromScrape) -> tuple[str | None, str | None]:
    """("sleeping", which level) when every engine reports ``awake`` 0; (None, None) when awake
    or when the server has no sleep gauge (before vLLM 0.11)."""
    awake = scrape.samples.get(names.VLLM_SLEEP_GAUGE)
    if not awake:
        return None, None
    flags: dict[str, float] = {}
    for labels, v in awake:
        state = labels.get("sleep_state", "")
        flags[state] = max(flags.get(state, 0.0), v)
    if "awake" not in flags or flags["awake"] >= 1:
        return None, None
    for state, detail in names.VLLM_SLEEP_LEVELS.items():
        if flags.get(state, 0) >= 1:
            return "sleeping", detail
    return "sleeping", None


def _tp_pp(argv: list[str], flags: dict[str, tuple[str, ...]]) -> tuple[str, int | None]:
    tp = int_flag(argv, flags["tensor"]) or 1
    pp = int_flag(argv, flags["pipeline"]) or 1
    if tp > 1:
        return "tensor", tp * pp
    if pp > 1:
        return "pipeline", pp
    return "single", 1
