"""Dashboard widgets. Each one keeps the signature of what it last drew and repaints only
when that changes: a tick that changes nothing costs nothing."""

from __future__ import annotations

import re

from rich.segment import Segment
from rich.style import Style as RichStyle
from rich.text import Text
from textual.content import Content
from textual.geometry import Region
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Static

from ...model import GPU, Alert, Instance
from ...vocab import severity_rank
from .render import alert_line, gpu_card_lines, gpu_line, gpu_row_lines, instance_lines, short_gpu_name


def _key(c) -> tuple:
    """What a Content shows: its text and its spans (Content's == compares the text only)."""
    return (c.plain, c.spans) if isinstance(c, Content) else (str(c), ())


def _fixed_height(w: Widget) -> bool:
    """Is the widget's height set in cells (so new content of as many lines cannot resize it)?"""
    h = w.styles.height
    return h is not None and h.is_cells


class Card(Widget, can_focus=True):
    """A bordered, focusable block whose body is a list of Content lines, drawn with Textual's
    line API: each line becomes a Strip once, through a small cache of resolved styles, and is
    built again only when its own text or styling changed. (Through ``Static.update`` every
    card re-rendered every line through Textual's general Content pipeline on every tick: about
    70 % of the dashboard's CPU.) Lines longer than the card are cut with an ellipsis."""

    DEFAULT_CSS = "Card { height: auto; }"

    class Selected(Message):
        def __init__(self, card: "Card") -> None:
            super().__init__()
            self.card = card

    def __init__(self, *, id: str | None = None, classes: str = "") -> None:
        super().__init__(id=id, classes=classes)
        self._sig = None
        self._lines: list[Content] = []
        self._strips: dict[int, Strip] = {}
        self._styles: dict[tuple, RichStyle] = {}
        self._drawn_for = None

    def invalidate(self) -> None:
        """Draw every line again on the next ``show`` (the layout changed what a line holds)."""
        self._sig = None

    def show(self, lines: list[Content], title: Content | str, subtitle: Content | str = "") -> None:
        # text and spans, compared as they are (Content's own == looks at the text only)
        sig = ([_key(line) for line in lines], _key(title), _key(subtitle))
        old = self._sig
        if old is not None and sig == old:
            return
        self._sig = sig
        if old is None or sig[1] != old[1]:
            self.border_title = title
        if old is None or sig[2] != old[2]:
            self.border_subtitle = subtitle
        old_lines = old[0] if old is not None else []
        changed = [y for y, key in enumerate(sig[0]) if y >= len(old_lines) or old_lines[y] != key]
        changed += range(len(sig[0]), len(old_lines))
        for y in changed:
            self._strips.pop(y, None)
        self._lines = list(lines)
        if old is None or len(lines) != len(old_lines) or sig[1:] != old[1:]:
            # a card of fixed height keeps its size while its number of lines stays: skip the
            # screen's layout pass then (it re-measures every widget)
            self.refresh(layout=old is None or not _fixed_height(self) or len(lines) != len(old_lines))
        else:
            # only the lines whose text changed: Textual then keeps the border and the other
            # lines it already rendered (a bare refresh() re-renders the whole widget)
            width = self.size.width
            self.refresh(*(Region(0, y, width, 1) for y in changed))

    # ---- the line API -----------------------------------------------------------------
    def get_content_height(self, container, viewport, width: int) -> int:
        return len(self._lines)

    def get_content_width(self, container, viewport) -> int:
        return max((line.cell_length for line in self._lines), default=0)

    def _style(self, names: tuple) -> RichStyle:
        style = self._styles.get(names)
        if style is None:
            visual = self.visual_style
            for name in names:
                visual = visual + self._get_style(name)
            style = self._styles[names] = visual.rich_style
        return style

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        drawn_for = (width, self.visual_style)  # a theme, focus or size change redraws all
        if drawn_for != self._drawn_for:
            self._drawn_for = drawn_for
            self._strips.clear()
            self._styles.clear()
        strip = self._strips.get(y)
        if strip is None:
            if y < len(self._lines):
                strip = self._line_strip(self._lines[y], width)
            else:
                strip = Strip.blank(width, self._style(()))
            self._strips[y] = strip
        return strip

    def _line_strip(self, line: Content, width: int) -> Strip:
        text, spans = line.plain, line.spans
        if not spans:
            segments = [Segment(text, self._style(()))]
        else:
            cuts = sorted({0, len(text), *(s.start for s in spans), *(s.end for s in spans)})
            segments = []
            for a, b in zip(cuts, cuts[1:]):
                if a >= len(text):
                    break
                names = tuple(s.style for s in spans if s.start <= a < s.end)
                segments.append(Segment(text[a:b], self._style(names)))
        length = line.cell_length
        if length <= width:  # the usual case: pad, and make the one Strip with its length known
            if length < width:
                segments.append(Segment(" " * (width - length), self._style(())))
            return Strip(segments, width)
        strip = Strip(segments, length)
        if width > 1:
            strip = Strip.join([strip.crop(0, width - 1), Strip([Segment("…", self._style(()))])])
        return strip.adjust_cell_length(width, self._style(()))

    def on_click(self) -> None:
        self.focus()

    def key_enter(self) -> None:
        self.post_message(self.Selected(self))


class GpuCard(Card):
    def __init__(self, index: int, **kw) -> None:
        # no id: when the set of GPUs changes, new cards are mounted while the old ones are
        # still being removed, and equal ids would clash
        super().__init__(**kw)
        self.index = index
        self.gpu: GPU | None = None

    def refresh_from(self, g: GPU, hist: dict | None, compact: str | None) -> None:
        """compact: None (full card), "rows" (two lines), "tight" (one line)."""
        self.gpu = g
        width = max(20, self.size.width - 4) if self.size.width else 40
        title = Content.assemble((f"GPU {g.index}", "bold"), " ", short_gpu_name(g.name))
        sub = Content.assemble(*[(name, "$secondary") for name in g.instances[:2]]) if g.instances else ""
        if len(g.instances) > 1:
            sub = Content(" · ").join(Content.styled(n, "$secondary") for n in g.instances[:2])
        if compact == "tight":
            self.show([gpu_line(g, width)], "", "")
        elif compact:
            self.show(gpu_row_lines(g, width), "", "")
        else:
            self.show(gpu_card_lines(g, hist, width), title, sub)
        self.set_class(g.lost, "-lost")
        self.set_class(any(r in g.throttle_reasons for r in ("sw_thermal_slowdown", "hw_thermal_slowdown",
                                                                "hw_slowdown", "hw_power_brake")), "-throttled")


class InstanceCard(Card):
    def __init__(self, name: str, id: str | None = None, **kw) -> None:
        # ids come from the app (a counter): names are untrusted and two could map to one id
        super().__init__(id=id, **kw)
        self.name_key = name
        self.instance: Instance | None = None

    def refresh_from(self, inst: Instance, tok_hist) -> None:
        self.instance = inst
        width = max(20, self.size.width - 4) if self.size.width else 40
        kind = {"vllm": "vLLM", "llamacpp": "llama.cpp", "sglang": "SGLang", "ollama": "Ollama"}.get(inst.kind, inst.kind)
        title = Content.assemble((inst.name, "bold"), " · ", kind, (f" {inst.version}" if inst.version else "", "$text-muted"))
        status_style = {"up": "$success", "loading": "$warning", "sleeping": "$warning"}.get(inst.status, "$error bold")
        self.show(instance_lines(inst, tok_hist, width), title, Content.styled(inst.status, status_style))
        self.set_class(inst.status in ("down", "error"), "-down")


class AlertStrip(Static):
    """The active alerts, worst first; hidden when there are none."""

    def __init__(self, **kw) -> None:
        super().__init__("", markup=False, **kw)
        self._sig = None
        self.max_lines = 4

    def refresh_from(self, alerts: list[Alert]) -> None:
        alerts = sorted(alerts, key=lambda a: (-severity_rank(a.severity), a.subject))
        sig = tuple((a.severity, a.subject, a.message) for a in alerts) + (self.max_lines,)
        if sig == self._sig:
            return
        self._sig = sig
        self.display = bool(alerts)
        lines = [alert_line(a) for a in alerts[: self.max_lines]]
        if len(alerts) > self.max_lines:
            lines.append(Content.styled(f"  … {len(alerts) - self.max_lines} more (press a for all alerts)",
                                        "$text-muted"))
        self.update(Content("\n").join(lines))


class StatusLine(Static):
    def __init__(self, **kw) -> None:
        super().__init__("", markup=False, **kw)
        self._sig: str | None = None  # the text shown
        self._spans: list | None = None

    @property
    def text(self) -> str:
        """The plain text shown now ("" before the first ``show``)."""
        return self._sig or ""

    def show(self, content: Content) -> None:
        old = self._sig
        if content.plain == old and content.spans == self._spans:
            return
        self._sig, self._spans = content.plain, content.spans
        # a fixed-height line (the top line, changing every tick) needs no layout pass
        self.update(content, layout=old is None or not _fixed_height(self)
                    or old.count("\n") != content.plain.count("\n"))


_ANSI_BG = re.compile(r"\x1b\[48;[0-9;]*m")


class PlotextChart(Widget):
    """A line chart drawn by plotext 6 (``plotext.figure``), re-rendered only when its data or
    size changes. textual-plotext does not import with plotext 6, hence this small widget."""

    DEFAULT_CSS = "PlotextChart { height: 1fr; min-height: 8; }"

    def __init__(self, title: str, **kw) -> None:
        super().__init__(**kw)
        self.title = title
        self.series: list[tuple[str, list[float | None]]] = []
        self.y_range: tuple[float, float] | None = None
        self._cache: tuple | None = None
        self._text: Text | None = None

    def set_data(self, series: list[tuple[str, list[float | None]]], y_range=None) -> None:
        self.series = series
        self.y_range = y_range
        self.refresh()

    def render(self) -> Text:
        w, h = self.size.width, self.size.height
        key = (w, h, self.title, tuple((n, tuple(v)) for n, v in self.series), self.y_range)
        if key == self._cache and self._text is not None:
            return self._text
        self._cache = key
        self._text = self._draw(w, h)
        return self._text

    def _draw(self, w: int, h: int) -> Text:
        import plotext as plt

        if w < 10 or h < 5:
            return Text("")
        fig = plt.figure
        fig.clear()
        fig.theme("clear")
        drawn = 0
        for name, values in self.series:
            pts = [(i, v) for i, v in enumerate(values) if v is not None]
            if len(pts) < 2:
                continue
            xs, ys = zip(*pts)
            sig = fig.signal(list(xs), list(ys))
            sig.lines(True)
            sig.label(name)
            fig.draw(sig)
            drawn += 1
        if not drawn:
            return Text(f"{self.title}: collecting…", style="dim")
        if drawn > 3:  # a legend of many GPUs would cover the plot
            fig.legend(active=False)
        fig.plot_size(w, h)
        fig.title(self.title)
        out = fig.build().string()
        return Text.from_ansi(_ANSI_BG.sub("", out), no_wrap=True)

