"""A box that dies is never "ok": a real Prometheus on loopback scrapes two ``gpuwatch serve
--demo`` boxes; one is killed, then Prometheus restarts without it. The fleet source, the fleet
JSON, the text table and the fleet screen must say ``down``/``stale`` with since when, and raise
an alert. Skipped where the ``prometheus`` binary is not installed."""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import pytest

from _instances_servers import free_port
from conftest import run_cli
from test_fleet_prometheus import PROMETHEUS, _start_serve, _stop

pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="the prometheus binary is not installed "
                                "(Debian/Ubuntu: apt-get install prometheus); .ci/run installs it")


def _prometheus(tmp, port, targets):
    (tmp / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n"
        "scrape_configs:\n  - job_name: gpuwatch\n    static_configs:\n"
        f"      - targets: [{', '.join(repr(t) for t in targets)}]\n")
    return subprocess.Popen([PROMETHEUS, f"--config.file={tmp / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=open(tmp / "prometheus.log", "a"))


def _until(fn, what, timeout=30):
    """Wait for ``fn()`` to be truthy; ``what`` (or ``what()``) says what failed."""
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        assert time.monotonic() < deadline, what() if callable(what) else what
        time.sleep(0.5)


def _ready(url, prom, tmp):
    """True once Prometheus says it is ready (its storage loaded); a Prometheus that exited
    fails the test with the end of its log."""
    assert prom.poll() is None, f"Prometheus exited ({prom.returncode}): " + \
        (tmp / "prometheus.log").read_text(errors="replace")[-1500:]
    try:
        return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _both_up(url):
    try:
        res = httpx.post(f"{url}/api/v1/query", data={"query": "count(count by (host) (gpuwatch_host_info))"},
                         timeout=2).json()["data"]["result"]
        return bool(res) and float(res[0]["value"][1]) >= 2
    except (httpx.HTTPError, KeyError, ValueError):
        return False


def test_a_killed_box_is_down_and_a_removed_one_stale(tmp_path):
    from gpuwatch.fleet.source import FleetSource

    a, port_a = _start_serve("h100x8", "box-a")
    b, port_b = _start_serve("rtx4090x2", "box-b")
    prom_port = free_port()
    url = f"http://127.0.0.1:{prom_port}"
    prom = _prometheus(tmp_path, prom_port, [f"127.0.0.1:{port_a}", f"127.0.0.1:{port_b}"])
    src = FleetSource(url, timeout_s=3)
    try:
        _until(lambda: _both_up(url), "Prometheus never scraped both boxes")
        r = src.refresh()
        assert {s.host: s.status.state for s in r.hosts} == {"box-a": "up", "box-b": "up"}

        time.sleep(6)  # a box that lived a little: its last sample lies on the 5 s grid of the look-back
        b.kill()  # kill -9: no goodbye
        b.wait()
        killed_at = time.time()

        def down():
            # down, and its numbers gone: the failed scrape also ends its series (staleness
            # markers), but a refresh whose query time fell just before that scrape still reads
            # the last good samples while the targets API already says down (seen once in CI)
            snap = src.refresh().host("box-b")
            return snap if snap is not None and snap.status.state == "down" and not snap.gpus else None
        snap = _until(down, "box-b never turned down (with its old numbers gone) after its exporter was killed")
        assert snap.status.since is not None and snap.status.since[:10] == time.strftime("%Y-%m-%d", time.gmtime())
        assert f"127.0.0.1:{port_b}" in snap.status.reason
        assert [(x.kind, x.severity) for x in snap.alerts] == [("host_down", "critical")]
        assert "down" in (snap.nvml_error or "")
        assert src.last.host("box-a").status.state == "up"
        assert time.time() - killed_at < 30

        # the JSON and the text table say so too
        doc = json.loads(run_cli("snapshot", "--json", "--prometheus", url, timeout=30).stdout)
        hosts = {h["host"]: h for h in doc["hosts"]}
        assert hosts["box-b"]["status"]["state"] == "down" and hosts["box-b"]["status"]["since"]
        assert hosts["box-a"]["status"]["state"] == "up"
        text = run_cli("snapshot", "--text", "--prometheus", url, timeout=30).stdout
        row = next(line for line in text.splitlines() if line.startswith("box-b"))
        assert "down since" in row and " ok" not in row

        # Prometheus restarts without box-a in its config: box-a's samples are still served
        # (from its write-ahead log, within the look-back) but they are not current any more
        _stop(prom)
        prom = _prometheus(tmp_path, prom_port, [f"127.0.0.1:{port_b}"])
        _until(lambda: _ready(url, prom, tmp_path), "the restarted Prometheus never became ready")
        seen = []  # what each refresh said, for the failure's message

        def stale():
            reading = src.refresh()  # never raises: a Prometheus that does not answer is the reading's error
            snap = reading.host("box-a")
            seen.append(f"error={reading.error!r} box-a=" + (
                "absent" if snap is None else f"{snap.status.state} ({snap.status.reason}), {len(snap.gpus)} GPUs"))
            return snap if snap is not None and snap.gpus and snap.status.state == "stale" else None
        snap = _until(stale, lambda: "box-a's old samples were not shown as stale after Prometheus restarted; "
                                     "the last refreshes: " + " | ".join(seen[-3:]))
        assert len(snap.gpus) == 8  # the old numbers stay visible, marked
        assert [(x.kind, x.severity) for x in snap.alerts] == [("host_stale", "warning")]
    finally:
        src.close()
        for p in (a, b, prom):
            _stop(p)


def test_summary_counts_each_severity():
    from gpuwatch.fleet.summary import summarize
    from gpuwatch.frontends.text import fleet_alert_text
    from gpuwatch.model import Alert, Snapshot

    s = Snapshot(time="2026-11-23T10:00:00.000Z", host="h", alerts=[
        Alert(kind="gpu_lost", severity="critical", subject="GPU 1", message="x"),
        Alert(kind="power_cap", severity="warning", subject="GPU 2", message="y")])
    assert fleet_alert_text(summarize(s)) == "1 crit 1 warn"
