"""The fleet screen's table of hosts, drawn with Textual's line API: each row is one Strip, built
again only when that row's cells (or the columns' widths, the cursor, the theme) change.

Why not Textual's ``DataTable``: any ``update_cell`` bumps its update counter, which is part of
every render cache key, so each refresh rendered every visible cell again through Rich (padding,
text, line splitting): 0.1-0.3 s of the UI thread a refresh on a 2-core VM however few hosts
changed, about half of the fleet screen's CPU with 64 hosts (README, Performance, tenth round).
What the fleet screen used of it is here: a header, zebra stripes, a row cursor (keys, mouse),
``Selected`` on enter or click, horizontal and vertical scrolling, the same theme variables.
"""

from __future__ import annotations

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

PAD = 1  # blank cells each side of a column, as DataTable's cell_padding


class HostTable(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    HostTable {
        background: $surface;
        color: $foreground;
        height: 1fr;
        &:focus {
            background-tint: $foreground 5%;
            & > .host-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
        }
        &:dark > .host-table--even-row {
            background: $surface-darken-1 40%;
        }
        & > .host-table--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        & > .host-table--even-row {
            background: $surface-lighten-1 50%;
        }
        & > .host-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
    }
    """
    COMPONENT_CLASSES = {"host-table--header", "host-table--even-row", "host-table--cursor"}
    BINDINGS = [
        Binding("enter", "select", "Open", show=False),
        Binding("up", "move(-1)", show=False),
        Binding("down", "move(1)", show=False),
        Binding("pageup", "page(-1)", show=False),
        Binding("pagedown", "page(1)", show=False),
        Binding("home", "move_to(0)", show=False),
        Binding("end", "move_to(-1)", show=False),
    ]

    class Selected(Message):
        """Enter or a click on a row: ``key`` is the row's key (the host)."""

        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    _PARSED: dict[str, Style] = {}

    _follow = False  # a key has moved the cursor: from then on a scrollbar appearing keeps it in view

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._columns: list[tuple[str, str, int | None]] = []  # (key, label, fixed width or None)
        self._widths: list[int] = []
        self._keys: list[str] = []
        self._cells: dict[str, list[Text]] = {}
        self._sigs: dict[str, tuple] = {}
        self._drawn: dict[str, tuple[tuple, Strip]] = {}  # key -> (what it was drawn from, strip)
        self._header: tuple[tuple, Strip] | None = None
        self.cursor = 0

    # ---- contents ---------------------------------------------------------------------------------
    def set_columns(self, columns: list[tuple[str, str, int | None]]) -> None:
        self._columns = list(columns)
        self._measure()

    def set_rows(self, rows: list[tuple[str, list[Text]]]) -> None:
        """The whole table, in order: (key, cells) per row. The cursor stays on its row's key."""
        current = self.cursor_key
        keys = [key for key, _ in rows]
        changed = keys != self._keys
        for key, cells in rows:
            sig = tuple((c.plain, str(c.style)) for c in cells)
            if self._sigs.get(key) != sig:
                self._sigs[key], self._cells[key] = sig, list(cells)
                changed = True
        for gone in set(self._cells) - set(keys):
            for kept in (self._cells, self._sigs, self._drawn):
                kept.pop(gone, None)
        self._keys = keys
        if current in self._cells:
            self.cursor = keys.index(current)
        self.cursor = max(0, min(self.cursor, len(keys) - 1))
        if changed:
            self._measure()
            self.refresh()

    @property
    def cursor_key(self) -> str | None:
        return self._keys[self.cursor] if 0 <= self.cursor < len(self._keys) else None

    def _measure(self) -> None:
        widths = []
        for i, (_, label, fixed) in enumerate(self._columns):
            if fixed is not None:
                widths.append(fixed)
            else:
                widths.append(max([cell_len(label), *(cell_len(self._cells[k][i].plain) for k in self._keys
                                                      if i < len(self._cells[k]))]))
        if widths != self._widths:
            self._widths = widths
            self._drawn.clear()
            self._header = None
        self.virtual_size = Size(sum(w + 2 * PAD for w in widths), len(self._keys) + 1)

    # ---- drawing ----------------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width  # (size would include the scrollbars)
        x = self.scroll_offset.x
        base = self.rich_style
        if y == 0:
            style = base + self.get_component_rich_style("host-table--header")
            key = (tuple(self._widths), style, width)
            if self._header is None or self._header[0] != key:
                cells = [Text(label) for _, label, _ in self._columns]
                self._header = (key, self._row_strip(cells, style, width, cell_styles=False))
            return self._header[1].crop(x, x + width)
        i = self.scroll_offset.y + y - 1
        if not 0 <= i < len(self._keys):
            return Strip.blank(width, base)
        key = self._keys[i]
        style = base
        if i % 2:
            style = style + self.get_component_rich_style("host-table--even-row")
        cursor = self.get_component_rich_style("host-table--cursor") if i == self.cursor else None
        if cursor is not None:
            style = style + cursor
        what = (self._sigs[key], style, cursor is not None, width)
        drawn = self._drawn.get(key)
        if drawn is None or drawn[0] != what:
            drawn = self._drawn[key] = (what, self._row_strip(self._cells[key], style, width, over=cursor))
        return drawn[1].crop(x, x + width)

    def _row_strip(self, cells: list[Text], style: Style, width: int, cell_styles: bool = True,
                   over: Style | None = None) -> Strip:
        """One row: each cell padded to its column, longer text cut with an ellipsis, in the row's
        style plus the cell's own (on the cursor row the cursor's colours win, as DataTable's)."""
        segments = []
        for cell, w in zip(cells, self._widths):
            text = cell.plain
            n = cell_len(text)
            if n > w:
                text = set_cell_size(text, max(0, w - 1)) + "…" if w else ""
            elif n < w:
                text += " " * (w - n)
            cell_style = style + self._parse(str(cell.style)) if cell_styles and cell.style else style
            if over is not None:
                cell_style = cell_style + over
            segments.append(Segment(" " * PAD + text + " " * PAD, cell_style))
        total = sum(w + 2 * PAD for w in self._widths)
        if total < width:  # the row's background to the right edge
            segments.append(Segment(" " * (width - total), style))
        return Strip(segments, max(total, width))

    @classmethod
    def _parse(cls, text: str) -> Style:
        style = cls._PARSED.get(text)
        if style is None:
            style = cls._PARSED[text] = Style.parse(text)
        return style

    # ---- the cursor -------------------------------------------------------------------------------
    def _move(self, row: int) -> None:
        if not self._keys:
            return
        self.cursor = max(0, min(row, len(self._keys) - 1))
        self._follow = True
        self._into_view()
        self.refresh()

    def _into_view(self) -> None:
        """Scroll so the cursor's row is in view, between the header and any horizontal scrollbar."""
        visible = max(1, self.scrollable_content_region.height - 1)  # rows under the header
        top = self.scroll_offset.y
        # force: Textual ignores a scroll while the widget's scrollbar is not shown yet, and it is
        # only shown at the layout after the rows arrived; a key pressed before that (End as the
        # fleet first loads) left the cursor out of view for good
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, force=True)
        elif self.cursor >= top + visible:
            self.scroll_to(y=self.cursor - visible + 1, animate=False, force=True)

    def watch_show_horizontal_scrollbar(self, shown: bool) -> None:
        # a scrollbar that appears after the cursor moved (the next layout) takes a row or a column
        # from the view: bring the cursor back into what is left
        if self._follow:
            self.call_after_refresh(self._into_view)

    def watch_show_vertical_scrollbar(self, shown: bool) -> None:
        self.watch_show_horizontal_scrollbar(shown)

    def action_move(self, step: int) -> None:
        self._move(self.cursor + step)

    def action_page(self, direction: int) -> None:
        self._move(self.cursor + direction * max(1, self.scrollable_content_region.height - 2))

    def action_move_to(self, row: int) -> None:
        self._move(row if row >= 0 else len(self._keys) - 1)

    def action_select(self) -> None:
        if self.cursor_key is not None:
            self.post_message(self.Selected(self.cursor_key))

    def _on_click(self, event: events.Click) -> None:
        if event.y == 0:
            return  # the header
        row = self.scroll_offset.y + event.y - 1
        if 0 <= row < len(self._keys):
            self._move(row)
            self.post_message(self.Selected(self._keys[row]))
