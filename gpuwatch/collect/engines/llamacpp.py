"""llama.cpp ``llama-server`` (or ``llama serve``): ``/metrics`` (with ``--metrics``), ``/slots``,
``/props``.

llama.cpp adds a request's generated tokens to ``tokens_predicted_total`` only when the request
ends (see ``names.LLAMACPP``), so the counter alone reads as a stall during long generations
and as a spike when they finish. The live count is the counter plus every busy slot's
``n_decoded`` from ``/slots``, read in the same poll; without ``--metrics`` it is built from
``/slots`` alone (:class:`SlotCounter`). ``/slots`` wakes a sleeping server and keeps an idle one
awake, so it is read only when the server is busy or cannot say so otherwise.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass, field
from typing import Any

from ...model import ModelInfo
from . import names
from .base import (Engine, FetchError, Fetcher, PromScrape, Reading, flag_value, int_flag, prometheus_reading,
                   scrape_off_loop,
                   wanted_names)

# a split GGUF's shard suffix: model-00001-of-00003.gguf
_SHARD = re.compile(r"-\d{5}-of-\d{5}$")
# llama.cpp's -ngl / --n-gpu-layers / --gpu-layers (common/arg.cpp): 0 keeps every layer on the CPU
GPU_LAYERS_FLAGS = ("-ngl", "--n-gpu-layers", "--gpu-layers")
DEVICE_FLAGS = ("-dev", "--device")


class LlamacppEngine(Engine):
    kind = "llamacpp"
    table = names.LLAMACPP
    wanted = wanted_names(names.LLAMACPP)

    async def poll(self, f: Fetcher, cache: dict[str, Any]) -> Reading:
        metrics_on = cache.get("metrics_on")  # None: not known yet
        # /props is read every tick when it is the only way to know that /slots may be read
        props_coro = (f.get_json(names.LLAMACPP_PROPS, optional=True) if metrics_on is False
                      else f.rarely(cache, "props", lambda: f.get_json(names.LLAMACPP_PROPS, optional=True)))
        # while the last poll saw requests running, /slots goes with /metrics: the main loop answers
        # both between the same two decode steps, so the counter and n_decoded agree
        parts = [f.get_text("/metrics", optional=True), props_coro]
        if metrics_on and cache.get("busy"):
            parts.append(_optional(f.get_json(names.LLAMACPP_SLOTS, optional=True)))
        got = await asyncio.gather(*parts, return_exceptions=True)
        for part in got:
            if isinstance(part, BaseException):
                raise part
        metrics, props = got[0], got[1]
        slots = got[2] if len(got) > 2 else None
        cache["metrics_on"] = metrics is not None
        sleeping = isinstance(props, dict) and props.get("is_sleeping") is True

        if metrics is not None:
            scrape = await scrape_off_loop(metrics, wanted=self.wanted, series=cache.setdefault("series", {}))
            r = prometheus_reading(scrape, self.table)
            running = r.gauges.get("requests_running")
            r.gauges["slots_busy"] = running
            if running and slots is None and not sleeping:
                slots = await _optional(f.get_json(names.LLAMACPP_SLOTS, optional=True))
            cache["busy"] = bool(running)
            _extra_counters(scrape, r)
            done = r.counters.get("generation_tokens")
            if done is not None:  # the live count, differenced by the collector before the counter
                live = busy_decoded(slots) if isinstance(slots, list) else 0
                r.counters["generation_tokens_iter"] = cache.setdefault("live", LiveCount()).update(done, live)
        else:
            if props is None:
                raise FetchError("neither /metrics nor /props answered", path="/props")
            r = Reading()
            if not sleeping:
                slots = await _optional(f.get_json(names.LLAMACPP_SLOTS, optional=True))
            if isinstance(slots, list):
                counter = cache.setdefault("slot_counter", SlotCounter())
                counter.update(slots, f.clock())
                r.counters["generation_tokens_iter"] = counter.generated
                r.counters["prompt_tokens"] = counter.prompt
                busy = sum(1 for s in slots if _busy(s))
                r.gauges["requests_running"] = busy
                # a task waits (is deferred) only while no slot is free; with every slot busy /slots
                # cannot say how many wait
                r.gauges["requests_waiting"] = 0 if busy < len(slots) else None
                r.gauges["slots_busy"] = busy
                r.gauges["slots_total"] = len(slots)
        if isinstance(slots, list) and r.gauges.get("kv_cache_usage_pct") is None:
            r.gauges["kv_cache_usage_pct"] = context_used_pct(slots)
        elif r.gauges.get("kv_cache_usage_pct") is None and r.gauges.get("requests_running") == 0:
            r.gauges["kv_cache_usage_pct"] = 0.0  # no request holds any context
        if isinstance(props, dict):
            _read_props(props, r)
        if sleeping:
            r.state = "sleeping"
            r.state_detail = "model unloaded after --sleep-idle-seconds; the next request loads it again"
        return r

    def parallelism(self, argv: list[str]) -> tuple[str, int | None]:
        if int_flag(argv, GPU_LAYERS_FLAGS) == 0 or (flag_value(argv, DEVICE_FLAGS) or "").lower() == "none":
            return "cpu", None
        mode = flag_value(argv, names.LLAMACPP_SPLIT_FLAGS)
        if mode is None:
            return "pipeline", None  # layer split is the default; single when it turns out to be one GPU
        return names.LLAMACPP_SPLIT_MODES.get(mode.lower(), "unknown"), None


def model_name(props: dict) -> str | None:
    """The name clients use: the ``--alias`` (props ``model_alias`` differs from the path), else
    the file's stem (``/models/Llama-3-8B-Q4_K_M.gguf`` -> ``Llama-3-8B-Q4_K_M``)."""
    path = props.get("model_path")
    alias = props.get("model_alias")
    if isinstance(alias, str) and alias and alias != path:
        return display_model_name(alias)
    return display_model_name(path) if isinstance(path, str) and path else None


def display_model_name(name: str) -> str:
    """A model file's path as its stem (``/models/x-00001-of-00002.gguf`` -> ``x``); any other
    name (an alias such as ``qwen/coder``) as it is. Without ``--alias`` llama.cpp names the model
    by its path (/props ``model_alias``, /v1/models ``id``)."""
    if not name.lower().endswith(".gguf"):
        return name
    stem = os.path.basename(name.rstrip("/"))[:-5]
    return _SHARD.sub("", stem) or name


def _read_props(props: dict, r: Reading) -> None:
    settings = props.get("default_generation_settings")
    n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
    name = model_name(props)
    if name:
        ftype = props.get("model_ftype")
        quant = ftype[4:] if isinstance(ftype, str) and ftype.startswith("all ") else ftype
        r.models = [ModelInfo(name=name, context_length=n_ctx if isinstance(n_ctx, int) else None,
                              quantization=quant if isinstance(quant, str) and quant else None)]
    build = props.get("build_info")
    r.version = str(build) if build else None
    total = props.get("total_slots")
    if isinstance(total, int) and r.gauges.get("slots_total") is None:
        r.gauges["slots_total"] = total


def _extra_counters(scrape: PromScrape, r: Reading) -> None:
    """llama.cpp's own counters beyond the shared ones (see ``names.LLAMACPP``)."""
    table = names.LLAMACPP
    for key in ("generation_seconds", "spec_draft_tokens", "spec_accepted_tokens"):
        v = scrape.sum(table[key])
        if v is not None:
            r.counters[key] = v
    cached = scrape.sum(table["prompt_tokens_cached"])
    prompt = r.counters.get("prompt_tokens")
    if cached is not None and prompt is not None:
        # a prompt token is either computed (prompt_tokens_total) or taken from a slot's cache
        r.counters["prefix_cache_hits"] = cached
        r.counters["prefix_cache_queries"] = cached + prompt


def _busy(slot: Any) -> bool:
    return isinstance(slot, dict) and bool(slot.get("is_processing") or slot.get("state") == 1)


def _n_decoded(slot: dict) -> int:
    nxt = slot.get("next_token")
    if isinstance(nxt, list) and nxt and isinstance(nxt[0], dict):
        nxt = nxt[0]
    n = nxt.get("n_decoded") if isinstance(nxt, dict) else None
    return n if isinstance(n, int) and n > 0 else 0


def busy_decoded(slots: list) -> int:
    """Tokens generated so far by the requests running now (not yet in the counter)."""
    return sum(_n_decoded(s) for s in slots if _busy(s))


def context_used_pct(slots: list) -> float | None:
    """Context held by the running requests over all slots' context, in percent: llama.cpp's
    stand-in for KV-cache usage. A slot's ``n_prompt_tokens`` is its whole sequence (prompt,
    cached part and the tokens generated so far: ``prompt.tokens`` in server_slot::to_json)."""
    total = sum(s.get("n_ctx") or 0 for s in slots if isinstance(s, dict) and isinstance(s.get("n_ctx"), int))
    if total <= 0:
        return None
    used = sum(s.get("n_prompt_tokens") or 0 for s in slots if _busy(s) and isinstance(s.get("n_prompt_tokens"), int))
    return 100.0 * min(used, total) / total


@dataclass
class LiveCount:
    """``tokens_predicted_total`` + busy slots' ``n_decoded``: a count of generated tokens that
    rises as they are generated. It never goes down while the counter does not (a request that
    finished between the two reads would otherwise count twice, then not at all); a counter
    that went down is a restarted server and starts it afresh."""

    done: float | None = None
    total: float = 0.0

    def update(self, done: float, live: int) -> float:
        if self.done is not None and done < self.done:
            self.total = 0.0  # restarted
        self.done = done
        self.total = max(self.total, done + live)
        return self.total


@dataclass
class _Seen:
    task: Any
    decoded: int
    prompt: int
    remain: int
    t: float
    rate: float | None = None  # tokens/s of this slot's request, from its last two readings


@dataclass
class SlotCounter:
    """Generated and prompt-token counts built from ``/slots`` alone (a server without
    ``--metrics``). Each slot is followed by its task id: a task seen again adds what it generated
    since; a new task adds all it has. The tokens a request generated between its last reading
    and its end are not in /slots any more: they are taken as what the slot could generate in
    that time (its request's last rate), at most the ``n_remain`` it had left."""

    generated: float = 0.0
    prompt: float = 0.0
    seen: dict[Any, _Seen] = field(default_factory=dict)

    def update(self, slots: list, now: float) -> None:
        for s in slots:
            if not isinstance(s, dict):
                continue
            sid = s.get("id")
            prev = self.seen.get(sid)
            busy = _busy(s)
            task = s.get("id_task")
            decoded = _n_decoded(s) if busy else 0
            prompt = s.get("n_prompt_tokens_processed") if busy else 0
            prompt = prompt if isinstance(prompt, int) and prompt > 0 else 0
            nxt = s.get("next_token")
            nxt = nxt[0] if isinstance(nxt, list) and nxt and isinstance(nxt[0], dict) else nxt
            remain = nxt.get("n_remain") if isinstance(nxt, dict) else None
            remain = remain if isinstance(remain, int) else -1
            rate = None
            if prev is not None and prev.task == task and busy and decoded >= prev.decoded:
                self.generated += decoded - prev.decoded
                self.prompt += max(0, prompt - prev.prompt)
                if now > prev.t and decoded > prev.decoded:
                    rate = (decoded - prev.decoded) / (now - prev.t)
                else:
                    rate = prev.rate
            else:
                if prev is not None and prev.decoded > 0 and prev.rate:
                    # the request seen last time ended: its last tokens, at its last pace
                    tail = max(0.0, prev.rate * (now - prev.t) - decoded)
                    if prev.remain >= 0:
                        tail = min(tail, prev.remain)
                    self.generated += tail
                self.generated += decoded
                self.prompt += prompt
            self.seen[sid] = _Seen(task, decoded, prompt, remain, now, rate)


async def _optional(coro):
    """/slots is disabled with --no-slots and may answer 501/404 or an error: not fatal."""
    try:
        return await coro
    except FetchError as e:
        if e.status == "loading":
            raise
        return None
