"""Pilot tests of the fleet screen over recorded Prometheus answers: one row per host, enter
drills into the host's dashboard, escape comes back, a Prometheus that fails is the status line."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from conftest import until

from gpuwatch.fleet.mapping import build_queries
from gpuwatch.fleet.promql import PromClient
from gpuwatch.fleet.source import FleetSource
from gpuwatch.frontends.tui.fleet import FleetApp, FleetHostSource, FleetScreen

FIX = Path(__file__).parent / "fixtures" / "prometheus"


def _merged(kind):
    a = json.loads((FIX / f"gpuwatch-{kind}.json").read_text())
    if kind != "static":  # (the DCGM host's static properties are among its gauges)
        a["data"]["result"] += json.loads((FIX / f"dcgm-vllm-{kind}.json").read_text())["data"]["result"]
    return a


QUERIES = {q: k for k, q in build_queries().items()}
# the wall clock of the recording: the recorded box's last sample is then seconds old, not stale
RECORDED_AT = _merged("gauges")["data"]["result"][0]["value"][0]


def recorded_clock():
    start = time.monotonic()
    return lambda: RECORDED_AT + time.monotonic() - start


def visible_text(app) -> str:
    return "\n".join(s.text for s in app.screen._compositor.render_strips())


def make_app(state):
    def handler(request):
        if state["down"]:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        q = dict(httpx.QueryParams(request.content.decode()))["query"]
        return httpx.Response(200, json=_merged(QUERIES[q]))
    fleet = FleetSource("http://prom:9090", client=PromClient("http://prom:9090", transport=httpx.MockTransport(handler)),
                        wall=recorded_clock())
    return FleetApp(FleetHostSource(fleet), "http://prom:9090", interval=0.1)


async def test_fleet_rows_drill_in_and_back():
    state = {"down": False}
    app = make_app(state)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause(0.5)
        assert isinstance(app.screen, FleetScreen)
        text = visible_text(app)
        for host in ("boxa", "gpu-node-07", "gpu-node-08"):
            assert host in text
        assert "3 hosts · 11 GPUs" in text and "2 queries" in text
        assert "1 crit" in text  # boxa's thermal alert
        await pilot.press("enter")  # first row: boxa
        await pilot.pause(0.4)
        assert not isinstance(app.screen, FleetScreen)
        text = visible_text(app)
        assert "boxa" in text and "FLEET" in text and "GPU 7" in text and "vllm-llama70b" in text
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert isinstance(app.screen, FleetScreen)
        await pilot.press("down", "enter")
        await until(pilot, lambda: "gpu-node-07" in visible_text(app) and "vllm:8000" in visible_text(app),
                    "the second host's dashboard")
        await pilot.press("escape")
        state["down"] = True
        await pilot.pause(0.5)
        text = visible_text(app)
        assert "PROMETHEUS" in text and "unreachable" in text and "connection refused" in text
        assert "boxa" in text and "stale" in text  # the last answer stays, marked
        await pilot.press("q")
    assert not app.is_running


async def test_a_host_whose_target_is_down_is_down_in_its_row_and_its_dashboard():
    def handler(request):
        if request.url.path == "/api/v1/targets":
            return httpx.Response(200, json={"status": "success", "data": {"activeTargets": [
                {"labels": {"instance": "127.0.0.1:19835", "job": "gpuwatch"}, "health": "down",
                 "lastError": "connection refused", "lastScrape": "2026-11-23T10:00:00Z", "scrapeInterval": "2s"}],
                "droppedTargets": []}})
        q = dict(httpx.QueryParams(request.content.decode()))["query"]
        return httpx.Response(200, json=_merged(QUERIES[q]))
    fleet = FleetSource("http://prom:9090", client=PromClient("http://prom:9090", transport=httpx.MockTransport(handler)),
                        wall=recorded_clock())
    app = FleetApp(FleetHostSource(fleet), "http://prom:9090", interval=0.1)
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.pause(0.5)
        row = next(line for line in visible_text(app).splitlines() if "boxa" in line)
        assert "down since" in row and " ok" not in row and "1 crit" in row
        # its target is scraped every 2 s: refreshed every 1 s, not every 0.1 s as asked
        assert "every 1 s" in visible_text(app) and app.poll_period() == 1.0
        other = next(line for line in visible_text(app).splitlines() if "gpu-node-07" in line)
        assert "down" not in other  # (stale here: the target list names only boxa)
        await pilot.press("enter")
        await pilot.pause(0.4)
        text = visible_text(app)
        assert "boxa" in text and "down" in text and "connection refused" in text
        await pilot.press("q")


def _many_hosts(n):
    """The recorded box as n hosts (box-00 ...), each its own scrape target."""
    def copies(kind):
        doc = json.loads((FIX / f"gpuwatch-{kind}.json").read_text())
        doc["data"]["result"] = [dict(item, metric=dict(item["metric"], host=f"box-{h:02d}", instance=f"10.0.0.{h}:9835"))
                                 for h in range(n) for item in doc["data"]["result"]]
        return doc
    answers = {kind: copies(kind) for kind in ("gauges", "rates", "static")}

    def handler(request):
        if request.url.path != "/api/v1/query":
            return httpx.Response(404)
        return httpx.Response(200, json=answers[QUERIES[dict(httpx.QueryParams(request.content.decode()))["query"]]])
    fleet = FleetSource("http://prom:9090", client=PromClient("http://prom:9090", transport=httpx.MockTransport(handler)),
                        wall=recorded_clock())
    return FleetApp(FleetHostSource(fleet), "http://prom:9090", interval=1.0)


def _rows(app):
    return [line.split()[0] for line in visible_text(app).splitlines() if line.strip().startswith("box-")]


async def test_a_long_fleet_scrolls_with_the_cursor_and_a_click_opens_a_host():
    app = _many_hosts(30)
    async with app.run_test(size=(100, 16)) as pilot:
        await until(pilot, lambda: "box-00" in visible_text(app), "the fleet's rows")
        table = app.screen.query_one("#hosts")
        shown = _rows(app)
        assert shown[0] == "box-00" and len(shown) < 30  # a screenful
        # each step waits for its frame (a loaded machine may take more than a tenth of a second)
        await pilot.press("end")
        await until(pilot, lambda: _rows(app)[-1] == "box-29",
                    lambda: f"the last host in view, not under the scrollbar: {_rows(app)}, cursor {table.cursor_key}, focus {app.focused}")
        assert table.cursor_key == "box-29"
        await pilot.press("pageup")
        await until(pilot, lambda: table.cursor_key < "box-29" and table.cursor_key in _rows(app), "a page up")
        await pilot.press("home")
        await until(pilot, lambda: _rows(app)[0] == "box-00", "the first host in view")
        assert table.cursor_key == "box-00"
        await pilot.click(table, offset=(3, 3))  # the header, box-00, box-01, box-02
        await until(pilot, lambda: not isinstance(app.screen, FleetScreen), "the clicked host's dashboard")
        assert app.source.selected == "box-02" and "box-02" in visible_text(app)
        await pilot.press("q")


async def test_the_fleet_s_status_line_fits_one_line_at_80_columns_and_grows_back_when_widened():
    """At 80 columns the status line gave up its hint and shortened its refresh figures instead of
    wrapping mid-phrase onto the table's header ("… 2" / "queries · 38 ms …"); widened, it says all."""
    app = make_app({"down": False})
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: "boxa" in visible_text(app), "the fleet's rows")
        lines = visible_text(app).splitlines()
        assert "gpuwatch fleet" in lines[0] and "3 hosts · 11 GPUs" in lines[0] and " ms/" in lines[0], lines[:2]
        assert lines[1].split()[:2] == ["Host", "GPUs"], lines[:2]  # the header right below: no second line
        await pilot.resize_terminal(200, 24)
        await until(pilot, lambda: "enter: open host" in visible_text(app).splitlines()[0],
                    lambda: visible_text(app).splitlines()[0])
        top = visible_text(app).splitlines()[0]
        assert "via http://prom:9090" in top and "2 queries ·" in top and "every 0.1 s" in top, top
        await pilot.press("q")


async def test_at_80_columns_a_host_s_top_line_keeps_how_often_it_refreshes():
    """Paced by a 5 s scrape interval, the host view refreshes "every 2.5s": at 80 columns the
    fleet's own hint gives way (the footer has it) so that the refresh rate is not cut."""
    def handler(request):
        if request.url.path == "/api/v1/targets":
            return httpx.Response(200, json={"status": "success", "data": {"activeTargets": [
                {"labels": {"instance": "127.0.0.1:19835", "job": "gpuwatch"}, "health": "up", "lastError": "",
                 "lastScrape": "2026-11-23T10:00:00Z", "scrapeInterval": "5s"}], "droppedTargets": []}})
        doc = _merged(QUERIES[dict(httpx.QueryParams(request.content.decode()))["query"]])
        for item in doc["data"]["result"]:  # a host name of a usual length
            if item["metric"].get("host") == "boxa":
                item["metric"]["host"] = "gpu-node-0042.dc1"
        return httpx.Response(200, json=doc)
    fleet = FleetSource("http://prom:9090", client=PromClient("http://prom:9090", transport=httpx.MockTransport(handler)),
                        wall=recorded_clock())
    app = FleetApp(FleetHostSource(fleet), "http://prom:9090", interval=1.0)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: "gpu-node-0042" in visible_text(app), "the fleet's rows")
        await pilot.press("enter")
        await until(pilot, lambda: "FLEET" in visible_text(app).splitlines()[0], "the host's dashboard")
        top = visible_text(app).splitlines()[0]
        assert "every 2.5s" in top and "…" not in top, top
        await pilot.press("q")


@pytest.mark.parametrize("width", [10, 100])  # 100: wider than the terminal, a horizontal scrollbar too
async def test_end_pressed_as_the_rows_arrive_still_brings_the_last_row_into_view(width):
    """A key that moves the cursor in the same moment the rows arrive, before Textual's next
    layout shows the table's scrollbars, still scrolls (Textual ignores a plain scroll then), and
    the row stays in view when the horizontal scrollbar then takes the bottom line."""
    from rich.text import Text
    from textual.app import App

    from gpuwatch.frontends.tui.hosttable import HostTable

    class One(App):
        def compose(self):
            yield HostTable(id="t")

    app = One()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(HostTable)
        await pilot.pause()
        table.set_columns([("host", "host", width)])  # as the fleet's first refresh: columns and rows at once
        table.set_rows([(f"h{i:02d}", [Text(f"h{i:02d}")]) for i in range(40)])
        table.action_move_to(-1)  # End, before any layout saw the 40 rows
        def drawn():  # the rows in view: the content region, not the scrollbar's line
            return "\n".join("".join(s.text for s in table.render_line(y))
                             for y in range(table.scrollable_content_region.height))
        await until(pilot, lambda: "h39" in drawn(), lambda: f"h39 drawn: {drawn()[-200:]!r}")
        await pilot.pause(0.2)  # (and still there after the layout that follows)
        assert "h39" in drawn() and table.cursor_key == "h39" and table.scroll_offset.y > 0
