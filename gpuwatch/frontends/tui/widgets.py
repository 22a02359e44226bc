"""Dashboard widgets. Each one keeps the signature of what it last drew and repaints only
when that changes: a tick that changes nothing costs nothing."""

from __future__ import annotations


from rich.segment import Segment
from rich.style import Style as RichStyle
from rich.text import Text
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.dom import NoScreen
from textual.filter import ANSIToTruecolor
from textual.geometry import Region
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Static

from ...model import GPU, Alert, Instance
from ...vocab import engine_label, severity_rank
from .braille import plot
from .render import alert_lines_needed, fit_alerts, gpu_card_lines, gpu_line, gpu_row_lines, instance_lines, \
    short_gpu_name


def _key(c) -> tuple:
    """What a Content shows: its text and its spans (Content's == compares the text only)."""
    return (c.plain, c.spans) if isinstance(c, Content) else (str(c), ())


def _fixed_height(w: Widget) -> bool:
    """Is the widget's height set in cells (so new content of as many lines cannot resize it)?"""
    h = w.styles.height
    return h is not None and h.is_cells


def _truecolor(style: RichStyle | None) -> bool:
    """Nothing for Textual's ANSIToTruecolor filter to convert: colours in RGB already (the
    dashboard's styles come from the theme and the chart palette) and not dim. Checked once per
    style or draw, not per row drawn."""
    if style is None:
        return True
    color, bgcolor = style.color, style.bgcolor
    return ((color is None or color.triplet is not None) and (bgcolor is None or bgcolor.triplet is not None)
            and not style.dim)


def _needs_general_path(widget: Widget) -> bool:
    """Styles the line-API shortcuts here do not reproduce (opacity, tint, an outline, hatching):
    such a widget is drawn through Textual's general path. (Opacity walks every ancestor: asked
    only when the widget's own styles or size changed.)"""
    styles = widget.styles
    return bool(widget.opacity != 1 or styles.tint.a or styles.text_opacity != 1
                or any(kind for kind, _ in styles.outline) or (styles.has_rule("hatch") and styles.hatch != "none"))


def _apply_filters(strip: Strip, filters: tuple, background, all_truecolor: bool) -> Strip:
    """The app's line filters on one row; the truecolor filter skipped where every colour is RGB
    already (it would give back the same styles, one new Segment each)."""
    for line_filter in filters:
        if not (all_truecolor and isinstance(line_filter, ANSIToTruecolor)):
            strip = strip.apply_filter(line_filter, background)
    return strip


class KeptRender:
    """Mixin for a widget drawn through Textual's general path whose rows rarely change (a
    chart, a status line, a container's background): hands back the rows it rendered last
    until Textual marks the widget dirty (``_set_dirty``: every refresh, style, size, theme or
    content change goes through it) or the area asked for changes.

    Why: Textual's compositor renders every widget under the bounding box of *all* the regions
    that changed in a frame. The GPU cards (left), the instance cards (right) and the top line
    change every tick, so that box is the whole screen, and every chart and container was
    rendered again each second: through the styles cache, every row, each line filter applied
    again. Measured in the real dashboard on the bench box (8 GPUs, 4 servers, 200x60, 30 s):
    the four charts 174 ms, the containers ~50 ms, while their rows had not changed."""

    _kept: tuple | None = None

    def _set_dirty(self, *regions) -> None:
        self._kept = None
        super()._set_dirty(*regions)

    def render_lines(self, crop: Region) -> list[Strip]:
        key = (crop, self.size, self.visual_style, self.scroll_offset, tuple(self.get_line_filters()))
        kept = self._kept
        if kept is not None and kept[0] == key:
            return list(kept[1])
        strips = super().render_lines(crop)
        self._kept = (key, strips)
        return list(strips)


class KeptHorizontal(KeptRender, Horizontal):
    pass


class KeptVertical(KeptRender, Vertical):
    pass


class KeptVerticalScroll(KeptRender, VerticalScroll):
    pass


class KeptGrid(KeptRender, Grid):
    pass


class Card(Widget, can_focus=True):
    """A bordered, focusable block whose body is a list of Content lines, drawn with Textual's
    line API: each line becomes a Strip once, through a small cache of resolved styles, and is
    built again only when its own text or styling changed. (Through ``Static.update`` every
    card re-rendered every line through Textual's general Content pipeline on every tick: about
    70 % of the dashboard's CPU.) Lines longer than the card are cut with an ellipsis."""

    DEFAULT_CSS = "Card { height: auto; }"
    # a card whose lines come and go with the traffic (a latency line while requests finish)
    # keeps its height for this many shows after it shrank: no layout pass of the whole screen
    # (and no jumping cards) each time a line flickers; blank lines fill the difference
    sticky_height = 0

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
        self._frame: tuple[int, object] | None = None  # (width, visual style) while a render pass runs
        self._rows: dict[int, Strip] = {}  # whole rows (border and padding joined), by row
        self._quick_key = None
        self._pieces = None
        self._all_true = True  # every style in ``_styles`` is truecolor (see ``_truecolor``)
        self._tall = 0  # the most lines shown lately (a card with ``sticky_height``)
        self._short_for = 0  # shows in a row with fewer lines than that
        self._heading: tuple | None = None  # (what the border shows, (title, subtitle))

    def heading(self, key: tuple, build) -> tuple:
        """The border's (title, subtitle): ``build()`` again only when ``key`` (what they show)
        changed. They rarely change; every card asked for them every tick."""
        if self._heading is None or self._heading[0] != key:
            self._heading = (key, build())
        return self._heading[1]

    def invalidate(self) -> None:
        """Draw every line again on the next ``show`` (the layout changed what a line holds)."""
        self._sig = None

    def show(self, lines: list[Content], title: Content | str, subtitle: Content | str = "") -> None:
        # text and spans, compared as they are (Content's own == looks at the text only)
        if self.sticky_height:
            lines = self._keep_height(lines)
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
        top = self.styles.gutter.top
        for y in changed:
            self._strips.pop(y, None)
            self._rows.pop(y + top, None)
        self._lines = list(lines)
        if old is None or len(lines) != len(old_lines) or sig[1:] != old[1:]:
            # a card of fixed height keeps its size while its number of lines stays: skip the
            # screen's layout pass then (it re-measures every widget)
            self.refresh(layout=old is None or not _fixed_height(self) or len(lines) != len(old_lines))
        else:
            # only the lines whose text changed: Textual then keeps the border and the other
            # lines it already rendered (a bare refresh() re-renders the whole widget). Each
            # region is the whole row, border and padding included (regions are given in content
            # coordinates): the row is one Strip (``render_lines``), and a region of the content
            # alone made Textual cut a new Strip from every changed row and encode it again for the
            # terminal in every frame (half of its frame-writing time on the bench box)
            x = -self.content_offset.x
            width = self.outer_size.width
            self._repaint_rows([Region(x, y, width, 1) for y in changed])

    def _repaint_rows(self, regions: list[Region]) -> None:
        """``refresh(*regions)`` without its two-message hop. Textual's refresh marks the regions
        dirty, then prompts the widget's own message queue; when that queue is idle the widget
        posts ``Update`` to its screen, whose handler adds the widget to the screen's dirty
        widgets and prompts the screen. Each card changes every tick, so each tick paid for two
        messages per card (13 cards on the bench box: 26 dispatches, each a wake of an asyncio
        task): 12 % of a painted tick (bench/parts.py, 3.96 -> 3.48 ms). Here the regions are
        marked as refresh() marks them and the card is handed to the screen as its Update
        handler does (``Screen._on_update`` in Textual 8). Wherever that shortcut's conditions
        do not hold (a layout pending, the card hidden, unmounted or not laid out yet, a Textual
        without those attributes) it is refresh() itself."""
        try:
            screen = self.screen if self._is_mounted and not self._closing else None
            if screen is None or self._layout_required or not self.display or self not in screen._compositor:
                self.refresh(*regions)
                return
            # what Widget.refresh does for a repaint of regions ...
            self._layout_cache.clear()
            self._set_dirty(*regions)
            self.clear_cached_dimensions()
            self._rich_style_cache.clear()
            # ... and what Screen._on_update does with the Update message it would have posted
            screen._dirty_widgets.add(self)
            screen.check_idle()
        except (NoScreen, AttributeError):  # taken off its screen, or a Textual whose internals
            self.refresh(*regions)  # differ: its own path (regions marked twice are harmless)

    def _keep_height(self, lines: list[Content]) -> list[Content]:
        n = len(lines)
        if n >= self._tall:
            self._tall, self._short_for = n, 0
            return lines
        self._short_for += 1
        if self._short_for > self.sticky_height:
            self._tall, self._short_for = n, 0
            return lines
        return list(lines) + [Content("")] * (self._tall - n)

    # ---- the line API -----------------------------------------------------------------
    def render_lines(self, crop: Region) -> list[Strip]:
        """The card's rows, border and padding included. Textual's general path styles every
        changed row again (border pieces, padding, colours: most of the dashboard's drawing
        time); here the border rows and each row's border and padding pieces are rendered by
        Textual once per size, theme, focus and title, and a changed line is only joined
        between them."""
        # the size and visual style, looked up once per pass (each walks the DOM) rather than per line
        self._frame = (self.size.width, self.visual_style)
        try:
            frame = self._frame_pieces()
            if frame is None:  # styles this shortcut does not reproduce (outline, tint, opacity…)
                return super().render_lines(crop)
            top, bottom, left, right, filters, background, pieces_true = frame
            width, height = self.outer_size
            rows = self._rows
            out = []
            for y in crop.line_range:
                if y < len(top):
                    out.append(top[y])
                elif y >= height - len(bottom):
                    out.append(bottom[y - height + len(bottom)])
                else:
                    row = rows.get(y)
                    if row is None:
                        # one Strip for the whole row (each Strip makes seven caches of its own)
                        row = Strip([*left, *self._body_segments(y - len(top)), *right], width)
                        rows[y] = row = _apply_filters(row, filters, background, pieces_true and self._all_true)
                    out.append(row)
            x1, x2 = crop.column_span
            if (x1, x2) != (0, width):
                out = [row.crop(x1, x2) for row in out]
            return out
        finally:
            self._frame = None

    def _frame_pieces(self):
        """(top rows, bottom rows, left piece, right piece, line filters, background, whether the
        pieces' colours are all truecolor) for the card as it is now, rendered by Textual when any
        of what shapes them changed; None where the card's styles need Textual's general path.
        Asked every frame: a quick key of what changes the pieces (size, visual style, the
        styles' change counter, titles, the app's filters) is compared first, and the rest
        (opacity and background walk every ancestor) is read only when it changed."""
        styles = self.styles
        width, height = self.outer_size
        filters = tuple(self.get_line_filters())
        quick = (width, height, self._frame[1], styles._cache_key, self._border_title, self._border_subtitle, filters)
        if quick == self._quick_key:
            return self._pieces
        self._quick_key = quick
        self._pieces = None
        if _needs_general_path(self):
            return None
        gutter = styles.gutter
        if height <= gutter.top + gutter.bottom or width <= gutter.left + gutter.right:
            return None
        background = self.background_colors[1]
        self._styles_cache.clear()
        full = self._styles_cache.render_widget(self, Region(0, 0, width, height))
        self._styles_cache.clear()  # (the general path, if taken later, starts afresh)
        middle = full[gutter.top]
        left, right = middle.crop(0, gutter.left), middle.crop(width - gutter.right, width)
        pieces_true = all(_truecolor(seg.style) for piece in (left, right) for seg in piece)
        self._pieces = (full[:gutter.top], full[height - gutter.bottom:] if gutter.bottom else [],
                        left, right, filters, background, pieces_true)
        self._rows = {}
        return self._pieces

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
            if self._all_true and not _truecolor(style):
                self._all_true = False
        return style

    def _drawn_width(self) -> int:
        drawn_for = self._frame or (self.size.width, self.visual_style)  # a theme, focus or size change redraws all
        if drawn_for != self._drawn_for:
            self._drawn_for = drawn_for
            self._strips.clear()
            self._styles.clear()
            self._all_true = True
            self._rows.clear()
        return drawn_for[0]

    def render_line(self, y: int) -> Strip:
        width = self._drawn_width()
        strip = self._strips.get(y)
        if strip is None:
            strip = self._strips[y] = Strip(self._segments(y, width), width)
        return strip

    def _body_segments(self, y: int) -> list[Segment]:
        """Line ``y`` of the body as segments of exactly the body's width (render_lines joins
        them with the border pieces into one row, kept until the line changes)."""
        return self._segments(y, self._drawn_width())

    def _segments(self, y: int, width: int) -> list[Segment]:
        if y >= len(self._lines):
            return [Segment(" " * width, self._style(()))]
        line = self._lines[y]
        text, spans = line.plain, line.spans
        style = self._style
        if not spans:
            segments = [Segment(text, style(()))]
        elif all(a.end <= b.start for a, b in zip(spans, spans[1:])):
            # spans in order, none overlapping (what Content.assemble makes of (text, style)
            # parts): one pass, each gap in the card's own style
            segments = []
            at, end = 0, len(text)
            for span in spans:
                start, stop = span.start, min(span.end, end)
                if start >= end:
                    break
                if start > at:
                    segments.append(Segment(text[at:start], style(())))
                if stop > start:
                    segments.append(Segment(text[start:stop], style((span.style,))))
                at = stop
            if at < end:
                segments.append(Segment(text[at:], style(())))
        else:
            cuts = sorted({0, len(text), *(s.start for s in spans), *(s.end for s in spans)})
            segments = []
            for a, b in zip(cuts, cuts[1:]):
                if a >= len(text):
                    break
                names = tuple(s.style for s in spans if s.start <= a < s.end)
                segments.append(Segment(text[a:b], style(names)))
        length = line.cell_length
        if length <= width:  # the usual case: pad to the width, whose length is then known
            if length < width:
                segments.append(Segment(" " * (width - length), self._style(())))
            return segments
        strip = Strip(segments, length)
        if width > 1:
            strip = Strip.join([strip.crop(0, width - 1), Strip([Segment("…", self._style(()))])])
        return list(strip.adjust_cell_length(width, self._style(())))

    def on_click(self) -> None:
        self.focus()

    def on_resize(self) -> None:
        # lines are built for the card's width: a card drawn before it had its size (the first
        # frame) or resized is built again for the width it has now
        last = getattr(self, "_last", None)
        if last is not None:
            self.refresh_from(*last)

    def key_enter(self) -> None:
        self.post_message(self.Selected(self))


class GpuCard(Card):
    def __init__(self, index: int, **kw) -> None:
        # no id: when the set of GPUs changes, new cards are mounted while the old ones are
        # still being removed, and equal ids would clash
        super().__init__(**kw)
        self.index = index
        self.gpu: GPU | None = None
        self._last = None

    def _on_focus(self, event) -> None:
        super()._on_focus(event)
        self._redraw_selection()

    def _on_blur(self, event) -> None:
        super()._on_blur(event)
        self._redraw_selection()

    def _redraw_selection(self) -> None:
        if self._last is not None:  # rows mark the selected GPU's index (a card has its border)
            self.refresh_from(*self._last)

    def refresh_from(self, g: GPU, hist: dict | None, compact: str | None, procs_known: bool = True) -> None:
        """compact: None (full card), "rows" (two lines), "tight" (one line). ``procs_known``:
        False where there are no process tables (fleet views)."""
        self.gpu = g
        width = max(20, self.size.width - 4) if self.size.width else 40
        title, sub = self.heading((g.index, g.name, tuple(g.instances[:2])), lambda: self._build_heading(g))
        self._last = (g, hist, compact, procs_known)
        selected = self.has_focus
        if compact == "tight":
            self.show([gpu_line(g, width, selected)], "", "")
        elif compact:
            self.show(gpu_row_lines(g, width, selected), "", "")
        else:
            self.show(gpu_card_lines(g, hist, width, procs_known), title, sub)
        self.set_class(g.lost, "-lost")
        self.set_class(any(r in g.throttle_reasons for r in ("sw_thermal_slowdown", "hw_thermal_slowdown",
                                                                "hw_slowdown", "hw_power_brake")), "-throttled")

    @staticmethod
    def _build_heading(g: GPU) -> tuple[Content, Content | str]:
        title = Content.assemble((f"GPU {g.index}", "bold"), (" " + short_gpu_name(g.name)) if g.name else "")
        sub = Content(" · ").join(Content.styled(n, "$secondary") for n in g.instances[:2]) if g.instances else ""
        return title, sub


class InstanceCard(Card):
    sticky_height = 30
    def __init__(self, name: str, id: str | None = None, **kw) -> None:
        # ids come from the app (a counter): names are untrusted and two could map to one id
        super().__init__(id=id, **kw)
        self.name_key = name
        self.instance: Instance | None = None
        self._last = None

    def refresh_from(self, inst: Instance, tok_hist) -> None:
        self.instance = inst
        self._last = (inst, tok_hist)
        width = max(20, self.size.width - 4) if self.size.width else 40
        heading = self.heading((inst.name, inst.kind, inst.version, inst.status), lambda: self._build_heading(inst))
        self.show(instance_lines(inst, tok_hist, width), *heading)
        self.set_class(inst.status in ("down", "error"), "-down")

    @staticmethod
    def _build_heading(inst: Instance) -> tuple[Content, Content]:
        title = Content.assemble((inst.name, "bold"), " · ", engine_label(inst.kind),
                                 (f" {inst.version}" if inst.version else "", "$text-muted"))
        style = {"up": "$success", "loading": "$warning", "sleeping": "$warning"}.get(inst.status, "$error bold")
        return title, Content.styled(inst.status, style)


class AlertStrip(KeptRender, Static):
    """The active alerts, worst first, each in full (wrapped under its message) as far as the
    rows the layout gives it allow; hidden when there are none."""

    def __init__(self, **kw) -> None:
        super().__init__("", markup=False, **kw)
        self._sig = None
        self.alerts: list[Alert] = []
        self.budget = 4
        self.width_for = 78

    def refresh_from(self, alerts: list[Alert]) -> None:
        self.alerts = sorted(alerts, key=lambda a: (-severity_rank(a.severity), a.subject))
        self._draw()

    def lines_needed(self, width: int) -> int:
        return alert_lines_needed(self.alerts, width)

    def fit(self, width: int, budget: int) -> None:
        self.width_for, self.budget = width, budget
        self._draw()

    def _draw(self) -> None:
        sig = tuple((a.severity, a.subject, a.message) for a in self.alerts) + (self.budget, self.width_for)
        if sig == self._sig:
            return
        self._sig = sig
        self.display = bool(self.alerts)
        self.update(Content("\n").join(fit_alerts(self.alerts, self.width_for, self.budget)))


class StatusLine(KeptRender, Static):
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



class TopLine(Card, can_focus=False):
    """The dashboard's top line: one line of text that changes every tick (the clock, the
    self-cost), drawn through the card's line API. As a ``Static`` it went through Textual's
    general content pipeline on every frame (27 ms in 30 s on the bench box, 200x60)."""

    DEFAULT_CSS = "TopLine { height: 1; }"

    @property
    def text(self) -> str:
        """The plain text shown now ("" before the first ``show_line``)."""
        return self._lines[0].plain if self._lines else ""

    def show_line(self, content: Content) -> None:
        self.show([content], "")


# Okabe & Ito's colour-blind-safe palette (and a grey): one colour per series, the same in the legend
PALETTE = ((86, 180, 233), (230, 159, 0), (0, 158, 115), (240, 228, 66), (204, 121, 167), (213, 94, 0),
           (0, 114, 178), (190, 190, 190))


def time_ticks(span_s: float) -> tuple[list[float], list[str]]:
    """Positions (seconds before now, negative) and labels of the time axis: "-5m" … "now"."""
    for step in (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200):
        if span_s / step <= 5:
            break
    ticks = [-k * step for k in range(int(span_s // step), -1, -1)]
    def label(t: float) -> str:
        if t == 0:
            return "now"
        t = -t
        return f"-{t / 3600:g}h" if t >= 3600 and t % 3600 == 0 else f"-{t / 60:g}m" if t >= 60 and t % 60 == 0 \
            else f"-{t:g}s"
    return ticks, [label(t) for t in ticks]


def y_limits(values, y_range, min_span: float) -> tuple[float, float]:
    """The y axis: fixed when given, else the data's range widened to at least ``min_span`` (a
    flat line at 82.6 % must not look like swings between 82.53 and 82.68)."""
    if y_range is not None:
        return y_range
    lo, hi = min(values), max(values)
    if hi - lo < min_span:
        mid = (hi + lo) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
        if min(values) >= 0 and lo < 0:
            lo, hi = 0.0, max(hi - lo, min_span)
    return lo, hi


def value_ticks(lo: float, hi: float, count: int) -> tuple[list[float], list[str]]:
    """Round tick positions on the y axis and short labels (``1.5k``, ``0.25``, ``80``)."""
    import math

    span = hi - lo
    if span <= 0 or count < 2:
        return [lo], [_short(lo)]
    raw = span / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    ticks = []
    t = first
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    return ticks, [_short(t) for t in ticks]


def _short(v: float) -> str:
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e4:
        return f"{v / 1e3:.3g}k"
    if a >= 100 or v == int(v):
        return f"{v:.0f}"
    return f"{v:.3g}"


def text_segments(text: Text, base: RichStyle) -> list[Segment]:
    """A one-line rich Text as Segments over ``base``, without a Console."""
    def as_style(style) -> RichStyle:
        return RichStyle.parse(style) if isinstance(style, str) else (style or RichStyle())

    plain = text.plain
    whole = base + as_style(text.style)
    cuts = sorted({0, len(plain), *(sp.start for sp in text.spans), *(sp.end for sp in text.spans)})
    out = []
    for a, b in zip(cuts, cuts[1:]):
        if a >= len(plain):
            break
        style = whole
        for sp in text.spans:
            if sp.start <= a < sp.end:
                style = style + as_style(sp.style)
        out.append(Segment(plain[a:b], style))
    return out


class HistoryChart(KeptRender, Widget):
    """A line chart of history in braille dots (``braille.plot``), with a time axis ("-2m" …
    "now") and a legend in the first line, in the series' colours. Drawn with Textual's line
    API: each draw makes the chart's strips once (when its data, size or theme changes), and
    every repaint in between hands back the same strips."""

    DEFAULT_CSS = "HistoryChart { height: 1fr; min-height: 6; }"

    def __init__(self, title: str, **kw) -> None:
        super().__init__(**kw)
        self.title = title
        self.series: list[tuple[str, list[float | None]]] = []
        self.epochs: list[float | None] = []
        self.y_range: tuple[float, float] | None = None
        self.min_span = 1.0
        self._cache: tuple | None = None
        self._strips: list[Strip] = []
        self._version = 0  # one more with every set_data: the data is drawn once per version and size
        self._filtered: list[Strip] | None = []  # the rows with the app's line filters applied (None: general path)
        self._filtered_for: tuple | None = None

    def set_data(self, series: list[tuple[str, list[float | None]]], y_range=None, epochs=None,
                 min_span: float = 1.0) -> None:
        self.series = series
        self.y_range = y_range
        self.epochs = list(epochs or [])
        self.min_span = min_span
        self._version += 1  # (comparing the series themselves cost more than drawing them)
        self.refresh()

    def render_line(self, y: int) -> Strip:
        w, h = self.size
        base = self.visual_style
        key = (w, h, self._version, base)  # a theme change draws again too
        if key != self._cache:
            self._cache = key
            self._strips = self._draw_strips(w, h, base.rich_style)
        if y < len(self._strips):
            return self._strips[y]
        return Strip.blank(w, base.rich_style)

    def render_lines(self, crop: Region) -> list[Strip]:
        """The chart's rows as drawn, with the app's line filters applied once per draw. (Through
        Textual's styles cache each new draw was styled again row by row and every segment of
        every row converted by its truecolor filter: 3-4 ms a chart on the bench box, more than
        drawing it.) Styles this does not reproduce (a gutter, opacity, tint, an outline) take
        Textual's general path."""
        w, h = self.size
        if not w or not h:
            return super().render_lines(crop)
        self.render_line(0)  # drawn now if its data, size or theme changed
        filters = tuple(self.get_line_filters())
        key = (self._cache, self.styles._cache_key, filters)
        if key != self._filtered_for:
            self._filtered_for = key
            if any(self.styles.gutter) or _needs_general_path(self):
                self._filtered = None
            else:
                base = self.visual_style.rich_style
                strips = self._strips[:h] + [Strip.blank(w, base)] * max(0, h - len(self._strips))
                true = all(_truecolor(seg.style) for strip in strips for seg in strip)
                background = self.background_colors[1]
                self._filtered = [_apply_filters(strip, filters, background, true) for strip in strips]
        if self._filtered is None:
            return super().render_lines(crop)
        rows = self._filtered[crop.y:crop.bottom]
        x1, x2 = crop.column_span
        if (x1, x2) != (0, w):
            rows = [row.crop(x1, x2) for row in rows]
        return rows

    def text(self) -> str:
        """What the chart shows, as plain text."""
        self.render_line(0)  # drawn now if its data or size changed since
        return "\n".join(strip.text for strip in self._strips)

    def _draw_strips(self, w: int, h: int, base: RichStyle) -> list[Strip]:
        head, body = self._draw(w, h)
        strips = []
        if head is not None:
            strips.append(Strip(text_segments(head, base)).adjust_cell_length(w, base))
        colours: dict = {}
        for text, runs in body:
            segments, at = [], 0
            for start, end, rgb in runs:
                if start > at:
                    segments.append(Segment(text[at:start], base))
                style = colours.get(rgb)
                if style is None:
                    style = colours[rgb] = base + RichStyle(color=f"rgb({rgb[0]},{rgb[1]},{rgb[2]})")
                segments.append(Segment(text[start:end], style))
                at = end
            if at < len(text):
                segments.append(Segment(text[at:], base))
            # each plot line is exactly ``w`` cells (one per character): no measuring
            strips.append(Strip(segments, len(text)).adjust_cell_length(w, base))
        return strips[:h]

    def _points(self, values, times: dict) -> tuple[list[float], list[float]]:
        """(seconds before the newest sample, values), samples without a value left out; series
        and times aligned at their newest end. Series of one length share one list of times
        (``times``, by length), which ``braille.plot`` then divides into dot columns once."""
        values = list(values)
        n = len(values)
        epochs = self.epochs[-n:] if self.epochs else []
        newest = next((e for e in reversed(epochs) if e is not None), None)
        if newest is None or len(epochs) != n:
            if None not in values:
                xs = times.get(n)
                if xs is None:
                    xs = times[n] = [float(i - n + 1) for i in range(n)]
                return xs, values
            return ([float(i - n + 1) for i, v in enumerate(values) if v is not None],
                    [v for v in values if v is not None])
        if None not in values and None not in epochs:  # the usual case
            xs = times.get(n)
            if xs is None:
                xs = times[n] = [e - newest for e in epochs]
            return xs, values
        kept = [(e - newest, v) for e, v in zip(epochs, values) if v is not None and e is not None]
        return [x for x, _ in kept], [v for _, v in kept]

    def _draw(self, w: int, h: int) -> tuple[Text | None, list]:
        """The head line (title and legend) and the plot's lines with their colour runs."""
        if w < 16 or h < 4:
            return None, []
        times: dict[int, list[float]] = {}
        drawn = [(name, self._points(values, times), PALETTE[k % len(PALETTE)])
                 for k, (name, values) in enumerate(self.series)]
        drawn = [d for d in drawn if len(d[1][0]) >= 2]
        head = Text(self.title, style="bold", no_wrap=True, overflow="ellipsis")
        if not drawn:
            head.append("  collecting…", style="dim")
            head.truncate(w, overflow="ellipsis")
            return head, []
        span = max(5.0, -min(xs[0] for _, (xs, _), _ in drawn))  # x in time order
        if len(self.series) > 1:  # the legend: each series' name in its colour, shortened to fit
            names = [name for name, _, _ in drawn]
            room = w - head.cell_len
            if sum(len(n) + 4 for n in names) > room:
                names = [n.split()[-1] for n in names]  # "GPU 3" -> "3"
                each = max(2, room // len(names) - 3)
                names = [n if len(n) <= each else n[: each - 1] + "…" for n in names]
                sep = " ━"
            else:
                sep = "  ━ "
            for name, (_, _, rgb) in zip(names, drawn):
                head.append(sep, style=f"rgb({rgb[0]},{rgb[1]},{rgb[2]})")
                head.append(name)
        head.truncate(w, overflow="ellipsis")
        # the extremes are all the y axis needs (not every sample of every series in one list)
        values = [f(ys) for _, (_, ys), _ in drawn for f in (min, max)]
        lo, hi = y_limits(values, self.y_range, self.min_span)
        body = plot([(xs, ys, rgb) for _, (xs, ys), rgb in drawn], w, h - 1, span, lo, hi,
                    value_ticks(lo, hi, max(2, min(5, (h - 3) // 2))), time_ticks(span))
        return head, body
