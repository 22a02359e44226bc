"""Pure functions that turn model objects into styled Textual ``Content``.

Untrusted text (GPU names, process command lines, model names from servers) only ever goes in
as plain text parts of ``Content.assemble`` — never through markup — so ``[bold]`` or
``[@click=app.quit]`` in a process name shows literally. Styles use theme variables
(``$error``, ``$warning``, ...) so every theme colours them.
"""

from __future__ import annotations

import math

from textual.content import Content

from ...model import GPU, Alert, Instance
from ..units import NA, fmt_bytes, fmt_pct, fmt_rate

SPARK = "▁▂▃▄▅▆▇█"

THROTTLE_BADGES = {
    "sw_thermal_slowdown": ("THERMAL", "$error"),
    "hw_thermal_slowdown": ("HW-THERMAL", "$error"),
    "sw_power_cap": ("PWR-CAP", "$warning"),
    "hw_power_brake": ("PWR-BRAKE", "$error"),
    "hw_slowdown": ("HW-SLOW", "$error"),
    "applications_clocks": ("APP-CLK", "$text-muted"),
    "sync_boost": ("SYNC", "$text-muted"),
    "display_clocks": ("DISPLAY", "$text-muted"),
}
SEVERITY_STYLE = {"critical": "$error bold", "warning": "$warning", "info": "$text-muted"}
SEVERITY_MARK = {"critical": "CRIT", "warning": "WARN", "info": "INFO"}


def short_gpu_name(name: str | None) -> str:
    if not name:
        return "?"
    for prefix in ("NVIDIA GeForce ", "NVIDIA "):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


# The GPU card's lines are built every tick for every GPU (~0.4 ms a card through nested
# Content objects: each bar, sparkline and temperature one Content of its own, taken apart again by
# the line's Content.assemble). The ``*_parts`` helpers give (text, style) parts the line is
# assembled from at once: the same text and spans, ~0.23 ms a card (gpu_card_lines, 8 demo GPUs).


def bar_parts(fraction: float | None, width: int, style: str = "$accent") -> tuple:
    """A horizontal bar of ``width`` cells with eighth-cell resolution, as (text, style) parts."""
    if fraction is None or not math.isfinite(fraction):
        return (("·" * width, "$text-muted"),)
    fraction = max(0.0, min(1.0, fraction))
    eighths = int(round(fraction * width * 8))
    full, part = divmod(eighths, 8)
    text = "█" * full + ("▏▎▍▌▋▊▉"[part - 1] if part else "")
    rest = width - len(text)
    return (text, style), ("░" * rest, "$text-disabled")


def bar(fraction: float | None, width: int, style: str = "$accent") -> Content:
    """A horizontal bar of ``width`` cells with eighth-cell resolution."""
    return Content.assemble(*bar_parts(fraction, width, style))


def sparkline_part(values, width: int, top: float | None = None, style: str = "$secondary") -> str | tuple:
    """The sparkline as one part: (text, style), or blanks (no style) without values."""
    vals = list(values)[-width:]
    if not vals:
        return " " * width
    # the model holds no NaN/Inf (sanitize.py); a chart still never draws one
    vals = [v if v is not None and math.isfinite(v) else None for v in vals]
    known = [v for v in vals if v is not None]
    hi = top if top is not None else (max(known) if known else 1.0)
    hi = hi or 1.0
    chars = []
    for v in vals:
        if v is None:
            chars.append(" ")
        else:
            chars.append(SPARK[min(7, max(0, int(v / hi * 7.999)))])
    return "".join(chars).rjust(width), style


def memory_style(fraction: float | None) -> str:
    """GPU memory: inference servers fill it on purpose (vLLM preallocates ~90 % for KV cache),
    so only a card that is completely full is worth a colour."""
    if fraction is None:
        return "$text-muted"
    return "$warning" if fraction >= 0.99 else "$accent"


def temp_style(g: GPU) -> str:
    if g.temperature_c is None:
        return "$text-muted"
    if g.temperature_slowdown_c:
        margin = g.temperature_slowdown_c - g.temperature_c
        if margin <= 3:
            return "$error bold"
        if margin <= 10:
            return "$warning"
    return "$success"


def usage_style(fraction: float | None) -> str:
    if fraction is None:
        return "$text-muted"
    if fraction >= 0.97:
        return "$error"
    if fraction >= 0.85:
        return "$warning"
    return "$accent"


def link_degraded(g: GPU) -> bool:
    p = g.pcie
    return bool((p.width and p.max_width and p.width < p.max_width))


def pcie_link_parts(g: GPU) -> tuple:
    p = g.pcie
    if p.gen is None and p.width is None:
        return (("PCIe n/a", "$text-muted"),)
    text = f"Gen{p.gen if p.gen is not None else '?'} x{p.width if p.width is not None else '?'}"
    busy = (g.utilization_gpu_pct or 0) > 10
    if link_degraded(g):
        return ("PCIe ", "$text-muted"), (text, "$error bold"), (f" (max x{p.max_width})", "$error")
    if p.gen is not None and p.max_gen and p.gen < p.max_gen:
        # idle links downshift on purpose; only worth a colour under load
        return (("PCIe ", "$text-muted"), (text, "$warning" if busy else "$text-muted"),
                (" idle" if not busy else f" (max Gen{p.max_gen})", "$text-muted"))
    return ("PCIe ", "$text-muted"), text


def badges(g: GPU) -> Content:
    parts = badge_parts(g)
    return Content.assemble(*parts) if parts else Content("")


def badge_parts(g: GPU) -> list:
    parts: list = []
    for reason in g.throttle_reasons:
        if reason in THROTTLE_BADGES:
            label, style = THROTTLE_BADGES[reason]
            parts += [(f" {label} ", f"{style} reverse"), " "]
    return parts


def gpu_card_lines(g: GPU, hist: dict | None, width: int, procs_known: bool = True) -> list[Content]:
    """The body of a full GPU card (the title goes in the border)."""
    if g.lost:
        lines = [
            Content.styled("GPU LOST", "$error bold reverse"),
            Content.styled("fell off the bus (NVML: GPU is lost)", "$error"),
            Content.styled("check `dmesg | grep -i xid`; a reset or", "$text-muted"),
            Content.styled("reboot is needed to bring it back", "$text-muted"),
        ]
        if g.pci_bus_id:
            lines.insert(2, Content.assemble(("PCI ", "$text-muted"), g.pci_bus_id))
        return lines
    inner = max(20, width)
    # the bars and the sparkline share what the labels leave: a wider card, a longer history
    barw = max(6, (inner - 11) // 2)
    util = g.utilization_gpu_pct
    uf = None if util is None else util / 100
    mem_frac = None if g.memory_used_pct is None else g.memory_used_pct / 100
    spark_w = max(0, inner - barw - 11)
    util_line = Content.assemble(("util ", "$text-muted"), *bar_parts(uf, barw), f" {fmt_pct(util):>4} ",
                                 sparkline_part(hist["util"] if hist else [], spark_w, 100) if spark_w else "")
    if util is None and g.mig_mode:  # say why the figure is missing
        util_line = Content.assemble(("util ", "$text-muted"), ("n/a in MIG mode (no whole-GPU figure)", "$warning"))
    lines = [
        util_line,
        Content.assemble(("mem  ", "$text-muted"), *bar_parts(mem_frac, barw, memory_style(mem_frac)),
                         f" {fmt_bytes(g.memory_used_bytes)}/{fmt_bytes(g.memory_total_bytes)}"),
    ]
    fan = "" if g.fan_pct is None else f"  fan {g.fan_pct:.0f}%"
    power = NA if g.power_w is None else f"{g.power_w:.0f}"
    limit = NA if g.power_limit_w is None else f"{g.power_limit_w:.0f}W"
    pfrac = None if g.power_w is None or not g.power_limit_w else g.power_w / g.power_limit_w
    capped = g.power_limit_w is not None and g.power_default_limit_w and g.power_limit_w < g.power_default_limit_w
    lines.append(Content.assemble(
        ("temp ", "$text-muted"), *_temp_parts(g),
        ("  pwr ", "$text-muted"), (power, usage_style(pfrac)), ("/", "$text-muted"),
        (limit, "$warning" if capped else ""), fan))
    sm = NA if g.sm_clock_mhz is None else str(g.sm_clock_mhz)
    smax = "" if g.sm_clock_max_mhz is None else f"/{g.sm_clock_max_mhz}"
    clock_low = (g.sm_clock_mhz and g.sm_clock_max_mhz and (g.utilization_gpu_pct or 0) > 10
                 and g.sm_clock_mhz < 0.85 * g.sm_clock_max_mhz)
    lines.append(Content.assemble(("SM ", "$text-muted"), (sm, "$warning" if clock_low else ""),
                                  (f"{smax} MHz", "$text-muted"),
                                  ("  P" if g.pstate is not None else "", "$text-muted"),
                                  "" if g.pstate is None else str(g.pstate)))
    lines.append(Content.assemble(*pcie_link_parts(g), "  ", ("↓", "$text-muted"), fmt_rate(g.pcie.rx_bytes_per_s),
                                  (" ↑", "$text-muted"), fmt_rate(g.pcie.tx_bytes_per_s)))
    if g.nvlink is not None:
        nv = g.nvlink
        if fabric_down(g):
            state = f" fabric {g.fabric_state.replace('_', ' ')}" if g.fabric_state not in (None, "completed") else ""
            lines.append(Content.assemble(("NVLink ", "$text-muted"),
                                          (f"{nv.links_active}/{nv.links_total} active{state}", "$error bold")))
        else:
            lines.append(Content.assemble(("NVLink ", "$text-muted"), f"{nv.links_active} links", ("  ↓", "$text-muted"),
                                          fmt_rate(nv.rx_bytes_per_s), (" ↑", "$text-muted"),
                                          fmt_rate(nv.tx_bytes_per_s)))
    procs = len(g.processes)
    garbled = " (+ garbled PIDs: driver bug)" if "processes" in g.errors else ""
    # a fleet view has no process tables: nothing rather than a wrong "0 procs"
    count = (f"{procs} proc" + ("" if procs == 1 else "s") + garbled) if procs_known else ""
    tail = Content.assemble(*badge_parts(g), (count, "$text-muted"), (mig_text(g), "$warning"))
    lines.append(tail)
    return lines


def mig_text(g: GPU) -> str:
    """' · MIG 3g.40gb 18.0GiB/39.6GiB, 3g.40gb 0B/39.6GiB' for a GPU in MIG mode, else ''."""
    if not g.mig_mode:
        return ""
    devs = ", ".join(f"{(d.name or f'MIG {d.index}').rsplit(' ', 1)[-1]} "
                     f"{fmt_bytes(d.memory_used_bytes)}/{fmt_bytes(d.memory_total_bytes)}" for d in g.mig_devices)
    return f" · MIG {devs or 'on, no device'}"


def fabric_down(g: GPU) -> bool:
    nv = g.nvlink
    return g.fabric_state in ("not_started", "failed") or bool(
        nv is not None and nv.links_total and nv.links_active < nv.links_total)


def _temp_text(g: GPU) -> Content:
    """``57/90°C``: the temperature against this GPU's own slowdown point."""
    return Content.assemble(*_temp_parts(g))


def _temp_parts(g: GPU) -> tuple:
    if g.temperature_c is None:
        return ((NA, "$text-muted"),)
    slow = "" if g.temperature_slowdown_c is None else f"/{g.temperature_slowdown_c:.0f}"
    return (f"{g.temperature_c:.0f}", temp_style(g)), (f"{slow}°C", "$text-muted")


def _power_text(g: GPU) -> Content:
    pfrac = None if g.power_w is None or not g.power_limit_w else g.power_w / g.power_limit_w
    return Content.assemble((NA if g.power_w is None else f"{g.power_w:.0f}", usage_style(pfrac)),
                            (f"/{g.power_limit_w:.0f}W" if g.power_limit_w is not None else "W", "$text-muted"))


def _short_link(g: GPU) -> Content:
    """``Gen5 x16``, marked when it trained below its width, ``idle`` when downshifted at rest."""
    p = g.pcie
    if p.gen is None and p.width is None:
        return Content.styled("PCIe n/a", "$text-muted")
    text = " ".join(x for x in (f"Gen{p.gen}" if p.gen is not None else "", f"x{p.width}" if p.width is not None else "") if x)
    if link_degraded(g):
        return Content.assemble((text, "$error bold"), (f" of x{p.max_width}", "$error"))
    if p.gen is not None and p.max_gen and p.gen < p.max_gen and (g.utilization_gpu_pct or 0) <= 10:
        return Content.styled(text + " idle", "$text-muted")
    return Content.styled(text, "$text-muted")


def _instances_text(g: GPU, width: int) -> Content:
    names = ", ".join(g.instances) if g.instances else "—"
    if len(names) > width:
        names = names[: max(1, width - 1)] + "…"
    return Content.styled(f"{names:<{width}}", "$secondary" if g.instances else "$text-muted")


def gpu_row_lines(g: GPU, width: int, selected: bool = False, name_width: int = 14) -> list[Content]:
    """Two labelled lines per GPU (120x40): what identifies it (index, model, the instance it
    serves), then its bars, temperature against its slowdown point, power against its limit,
    clock, link and clock-event badges."""
    name = short_gpu_name(g.name)
    name = name if len(name) <= name_width else name[: name_width - 1] + "…"
    idx = Content.styled(f"{g.index:>2}", "bold reverse" if selected else "bold")
    if g.lost:
        return [Content.assemble(idx, " ", (f"{name:<{name_width}} ", "$text-muted"),
                                 ("LOST: fell off the bus; check dmesg for Xid, a reset or reboot brings it back",
                                  "$error bold")),
                Content.assemble("   ", _instances_text(g, name_width))]
    util = g.utilization_gpu_pct
    mem_frac = None if g.memory_used_pct is None else g.memory_used_pct / 100
    mem = f"{fmt_bytes(g.memory_used_bytes)}/{fmt_bytes(g.memory_total_bytes)}"
    fixed = 3 + name_width + 1 + 5 + 6 + 5 + 1 + 15  # bars of one length on every row
    barw = max(4, (width - fixed) // 2)
    line1 = Content.assemble(
        idx, " ", (f"{name:<{name_width}} ", "bold"), ("util ", "$text-muted"),
        *bar_parts(None if util is None else util / 100, barw), f" {fmt_pct(util):>4} ", ("mem ", "$text-muted"),
        *bar_parts(mem_frac, barw, memory_style(mem_frac)), f" {mem}")
    clock_low = (g.sm_clock_mhz and g.sm_clock_max_mhz and (util or 0) > 10 and g.sm_clock_mhz < 0.85 * g.sm_clock_max_mhz)
    line2 = Content.assemble("   ", _instances_text(g, name_width), " ", ("temp ", "$text-muted"), *_temp_parts(g),
                             ("  pwr ", "$text-muted"), _power_text(g))
    # then what fits, most telling first: clock-event badges, the link, the clock, the rates
    optional = [badges(g), _short_link(g)]
    if g.sm_clock_mhz is not None:
        optional.append(Content.assemble(("SM ", "$text-muted"), (f"{g.sm_clock_mhz}", "$warning" if clock_low else ""),
                                         ("MHz", "$text-muted")))
    optional.append(Content.assemble(("↓", "$text-muted"), fmt_rate(g.pcie.rx_bytes_per_s), (" ↑", "$text-muted"),
                                     fmt_rate(g.pcie.tx_bytes_per_s)))
    for part in optional:
        part = part.rstrip()
        if part.cell_length and line2.cell_length + 2 + part.cell_length <= width:
            line2 = Content.assemble(line2, "  ", part)
    return [line1, line2]


def gpu_line(g: GPU, width: int, selected: bool = False) -> Content:
    """One line per GPU for the smallest terminals (80x24 with 8 GPUs): index, bars, memory,
    temperature against slowdown, power, link, badges, and the instance it serves when there is
    room."""
    head = Content.assemble((f"{g.index:>2}", "bold reverse" if selected else "bold"), " ")
    if g.lost:
        return Content.assemble(head, ("LOST: fell off the bus; check dmesg for Xid", "$error bold"))
    util = g.utilization_gpu_pct
    mem_frac = None if g.memory_used_pct is None else g.memory_used_pct / 100
    barw = 8 if width < 100 else 14
    mem = f"{fmt_bytes(g.memory_used_bytes)}/{fmt_bytes(g.memory_total_bytes)}"
    temp = _temp_text(g)
    line = Content.assemble(
        head, *bar_parts(None if util is None else util / 100, barw), f" {fmt_pct(util):>4} ",
        *bar_parts(mem_frac, barw, memory_style(mem_frac)), f" {mem:>15} ", " " * max(0, 7 - temp.cell_length), temp,
        " ", (f"{NA if g.power_w is None else f'{g.power_w:.0f}W':>5}"), " ", _short_link(g), " ", badges(g))
    if g.instances and line.cell_length + 2 <= width:
        line = Content.assemble(line, " ", _instances_text(g, max(1, width - line.cell_length - 1)))
    return line


def instance_lines(inst: Instance, tok_hist, width: int) -> list[Content]:
    lines: list[Content] = []
    if inst.status in ("loading", "sleeping"):
        # not a fault: weights loading, or vLLM sleep mode
        lines.append(Content.assemble((f" {inst.status.upper()} ", "$warning bold reverse"), " ",
                                      (inst.status_detail or "", "$warning")))
        if inst.status_since:
            lines.append(Content.styled(f"since {inst.status_since}", "$text-muted"))
    elif inst.status != "up":
        lines.append(Content.assemble((f" {inst.status.upper()} ", "$error bold reverse"), " ",
                                      (inst.error or "no answer", "$error")))
        if inst.error_since:
            lines.append(Content.styled(f"since {inst.error_since}", "$text-muted"))
    for m in inst.models[:3]:
        parts: list = [(m.name, "bold")]
        if m.quantization:
            parts += [" ", (m.quantization, "$text-muted")]
        if m.cpu_offload_pct:
            parts += [" ", (f" {m.cpu_offload_pct:.0f}% CPU ", "$error bold reverse")]
        lines.append(Content.assemble(*parts))
        if m.size_bytes:
            vram = fmt_bytes(m.size_vram_bytes)
            lines.append(Content.assemble(("  size ", "$text-muted"), fmt_bytes(m.size_bytes),
                                          ("  vram ", "$text-muted"), vram))
    gpus = ",".join(str(i) for i in inst.gpus) if inst.gpus else "?"
    mode = inst.parallelism
    if inst.parallel_size and inst.parallelism in ("tensor", "pipeline"):
        mode += f" ×{inst.parallel_size}"
    if inst.parallelism == "cpu" and not inst.gpus:
        gpus, mode = "none", "CPU only"
    label = "GPU " if len(inst.gpus) == 1 else "GPUs "
    lines.append(Content.assemble((label, "$text-muted"), gpus, ("  ", ""), (mode, "$secondary")))
    settings = ollama_settings_line(inst)
    if settings is not None:
        lines.append(settings)
    if inst.kind == "ollama" and inst.generation_tokens_per_s is None and inst.bench is None and inst.status == "up":
        # a meter in front gives live tok/s (docs/METER.md); b benchmarks once
        lines.append(Content.styled("no token counters: run gpuwatch meter, or b to bench", "$text-muted"))
    if inst.generation_tokens_per_s is not None or inst.kind != "ollama":
        tok = NA if inst.generation_tokens_per_s is None else f"{inst.generation_tokens_per_s:.1f}"
        prompt = NA if inst.prompt_tokens_per_s is None else f"{inst.prompt_tokens_per_s:.0f}"
        spark_w = max(0, width - 33)  # the sparkline grows with the panel
        lines.append(Content.assemble(("gen ", "$text-muted"), (tok, "bold"), (" tok/s ", "$text-muted"),
                                      sparkline_part(tok_hist or [], spark_w) if spark_w else "",
                                      ("  prompt ", "$text-muted"), prompt))
    if inst.requests_running is not None or inst.requests_waiting is not None:
        run = NA if inst.requests_running is None else f"{inst.requests_running:.0f}"
        wait = NA if inst.requests_waiting is None else f"{inst.requests_waiting:.0f}"
        parts = [("run ", "$text-muted"), run, ("  wait ", "$text-muted"),
                 (wait, "$warning" if inst.requests_waiting else "")]
        if inst.kv_cache_usage_pct is not None:
            kv = inst.kv_cache_usage_pct / 100
            # llama.cpp: the context its running requests hold (it exports no KV-cache usage)
            label = "  ctx " if inst.kind == "llamacpp" else "  KV "
            parts += [(label, "$text-muted"), *bar_parts(kv, 8, usage_style(kv)), f" {inst.kv_cache_usage_pct:.0f}%"]
        if inst.slots_total:
            parts += [("  slots ", "$text-muted"), f"{inst.slots_busy or 0}/{inst.slots_total}"]
        lines.append(Content.assemble(*parts))
    if inst.ttft_p50_s is not None or inst.itl_p50_s is not None:
        ttft = NA if inst.ttft_p50_s is None else f"{inst.ttft_p50_s * 1000:.0f}ms"
        itl = NA if inst.itl_p50_s is None else f"{inst.itl_p50_s * 1000:.0f}ms"
        ttft95 = "" if inst.ttft_p95_s is None else f"/{inst.ttft_p95_s * 1000:.0f}"
        itl95 = "" if inst.itl_p95_s is None else f"/{inst.itl_p95_s * 1000:.0f}"
        lines.append(Content.assemble(("TTFT p50/95 ", "$text-muted"), ttft + ttft95,
                                      ("  ITL ", "$text-muted"), itl + itl95))
    if inst.time_per_token_s is not None or inst.spec_accept_pct is not None:
        parts = []
        if inst.time_per_token_s is not None:
            parts += [("per token ", "$text-muted"), f"{inst.time_per_token_s * 1000:.0f}ms"]
        if inst.prefix_cache_hit_pct is not None:
            parts += [("  cache hit ", "$text-muted"), f"{inst.prefix_cache_hit_pct:.0f}%"]
        if inst.spec_accept_pct is not None:
            parts += [("  draft accepted ", "$text-muted"), f"{inst.spec_accept_pct:.0f}%"]
        lines.append(Content.assemble(*parts))
    energy = energy_line(inst)
    if energy is not None:
        lines.append(energy)
    if inst.bench is not None:
        b = inst.bench
        if b.error:
            lines.append(Content.assemble(("bench ", "$text-muted"), (b.error, "$error")))
        else:
            val = NA if b.generation_tokens_per_s is None else f"{b.generation_tokens_per_s:.1f} tok/s"
            lines.append(Content.assemble(("bench ", "$text-muted"), (val, "bold"), (f"  at {b.time[11:19]}", "$text-muted")))
    return lines


# Ollama's serving settings as the instance card shows them (names in collect/engines/names.py)
_OLLAMA_SHORT = (("OLLAMA_NUM_PARALLEL", "parallel"), ("OLLAMA_MAX_LOADED_MODELS", "models"),
                 ("OLLAMA_KEEP_ALIVE", "keep"), ("OLLAMA_SCHED_SPREAD", "spread"))


def ollama_settings_line(inst: Instance) -> Content | None:
    parts: list = []
    for key, short in _OLLAMA_SHORT:
        if key in inst.settings:
            parts += [(f"{short} " if not parts else f"  {short} ", "$text-muted"), inst.settings[key]]
    return Content.assemble(*parts) if parts else None


def energy_line(inst: Instance) -> Content | None:
    """Energy per token from the power of the instance's own GPUs; MFU / memory bandwidth when
    vLLM reports its estimated FLOPs and bytes."""
    parts: list = []
    if inst.power_w is not None and inst.generation_tokens_per_s:
        jpt = NA if inst.joules_per_token is None else f"{inst.joules_per_token:.2f}"
        parts += [("energy ", "$text-muted"), (jpt, "bold"), (" J/tok ", "$text-muted"),
                  f"{inst.tokens_per_s_per_kw or 0:.0f}", (" tok/s/kW", "$text-muted"),
                  (f"  {inst.power_w:.0f} W" + (" (shared GPUs split by memory)" if inst.power_shared else ""),
                   "$text-muted")]
    if inst.mfu_pct is not None or inst.mem_bw_util_pct is not None:
        parts += [("  MFU " if parts else "MFU ", "$text-muted"), fmt_pct(inst.mfu_pct),
                  ("  mem BW ", "$text-muted"), fmt_pct(inst.mem_bw_util_pct)]
    return Content.assemble(*parts) if parts else None


def _alert_head(a: Alert) -> tuple[Content, str]:
    message = a.message
    if message.startswith(a.subject + " "):  # "GPU 2 thermal slowdown…" under the subject "GPU 2"
        message = message[len(a.subject) + 1:]
    head = Content.assemble((f" {SEVERITY_MARK.get(a.severity, a.severity)} ",
                             f"{SEVERITY_STYLE.get(a.severity, '')} reverse"), " ", (a.subject, "bold"), " ")
    return head, message


def alert_line(a: Alert) -> Content:
    head, message = _alert_head(a)
    return Content.assemble(head, message)


def alert_lines(a: Alert, width: int) -> list[Content]:
    """One alert wrapped to ``width``, its continuation lines indented under the message (not
    under the badge), so the remedy at its end is read, not cut."""
    import textwrap

    head, message = _alert_head(a)
    badge = len(SEVERITY_MARK.get(a.severity, a.severity)) + 3
    # under the message; under the subject when the subject is long (a model name), so the
    # text keeps most of the width
    indent = head.cell_length if head.cell_length <= max(16, width // 4) else badge
    rest = max(8, width - indent)
    # one pass: the first line is shorter by what the head takes beyond the indent (a second pass
    # over re-joined pieces would put a space inside a word that had to be broken)
    lead = " " * max(0, min(head.cell_length - indent, rest - 8))
    chunks = textwrap.wrap(message, rest, initial_indent=lead, break_long_words=True,
                           break_on_hyphens=False) or [lead]
    chunks[0] = chunks[0][len(lead):]
    return [Content.assemble(head, chunks[0])] + [Content.assemble(" " * indent, c) for c in chunks[1:]]


def fit_alerts(alerts: list[Alert], width: int, budget: int) -> list[Content]:
    """The alerts in at most ``budget`` lines, worst first: whole alerts while they fit; when one
    does not, it is cut with an ellipsis where the space ends, and a last line says how many more
    there are (the history, ``a``, has them all)."""
    wrapped = [alert_lines(a, width) for a in alerts]
    total = sum(len(w) for w in wrapped)
    if total <= budget:
        return [line for w in wrapped for line in w]
    out: list[Content] = []
    room = max(1, budget - 1)  # one line says what is not shown
    shown = 0
    for w in wrapped:
        if len(out) + len(w) <= room:
            out += w
            shown += 1
            continue
        left = room - len(out)
        if left > 0:
            part = w[:left]
            part[-1] = Content.assemble(part[-1], "…")
            out += part
            shown += 1
        break
    more = len(alerts) - shown
    if more:
        out.append(Content.styled(f"  … {more} more alert{'s' if more != 1 else ''} (press a for all, in full)",
                                  "$text-muted"))
    elif len(out) < budget:
        out.append(Content.styled("  (press a for the alerts in full)", "$text-muted"))
    return out[:budget]


def alert_lines_needed(alerts: list[Alert], width: int) -> int:
    return sum(len(alert_lines(a, width)) for a in alerts)


def no_instances_text(snap) -> Content:
    """What the instance panel says when it has no instance to show."""
    if snap.status is not None and snap.status.state != "up":
        return Content.styled(f"{snap.host} is {snap.status.state}: its inference servers are not known.", "$warning")
    if snap.instances_pending:
        return Content.styled("looking for inference servers…", "$text-muted")
    return Content.styled("No inference servers found.\nAdd one with --backend URL or [[backends]] in the config.",
                          "$text-muted")
