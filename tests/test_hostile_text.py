"""Hostile input, finding 2: escape sequences and layout-shifting characters in every string
gpuwatch shows. One sanitiser where outside text enters the model (gpuwatch/sanitize.py); every
front end checked: snapshot --text/--json, doctor, bench, the fleet text, the dashboard."""

from __future__ import annotations

import dataclasses
import json
import typing

import pytest
from rich.cells import cell_len

from gpuwatch import model
from gpuwatch.model import GPU, Alert, BenchResult, Instance, ModelInfo, NvLink, Pcie, Process, Snapshot
from _tables import StubServers
from hostile_support import ESC_TITLE, HOSTILE, Peer, path_of, raw_bad_in, run_measured, send, send_json


@pytest.mark.parametrize("ch, shown", [
    ("\x1b", "\\x1b"), ("\x07", "\\x07"), ("\x08", "\\x08"), ("\r", "\\x0d"), ("\n", "\\x0a"), ("\x7f", "\\x7f"),
    ("\u009b", "\\x9b"), ("\u0085", "\\x85"), ("\x1c", "\\x1c"), ("\x0b", "\\x0b"), ("\u202e", "\\u202e"),
    ("\u202a", "\\u202a"), ("\u2066", "\\u2066"), ("\u2069", "\\u2069"), ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"), ("\u200d", "\\u200d"), ("\u200b", "\\u200b"), ("\ufe0f", "\\ufe0f"), ("\ud800", "\\ud800"),
])
def test_every_unsafe_character_is_shown_as_a_visible_escape(ch, shown):
    from gpuwatch.sanitize import clean_text
    out = clean_text(f"a{ch}b")
    assert out == f"a{shown}b" and out.isprintable()


def test_printable_text_is_kept_and_length_bounded():
    from gpuwatch.sanitize import TEXT_LIMIT, clean_text
    assert clean_text("NVIDIA H100 80GB HBM3") == "NVIDIA H100 80GB HBM3"
    assert clean_text("模型 😀 ü") == "模型 😀 ü"
    long = clean_text("x" * 100_000)
    assert len(long) == TEXT_LIMIT and long.endswith("…")
    assert len(clean_text("\x1b" * 100_000)) == TEXT_LIMIT


def _text_fields(cls):
    hints = typing.get_type_hints(cls)
    return [f.name for f in dataclasses.fields(cls) if hints[f.name] in (str, str | None)]


def test_every_text_field_of_the_model_is_cleaned():
    """Generic over the dataclasses: a new text field is covered without touching this test."""
    from gpuwatch.sanitize import clean_snapshot

    def filled(cls, **kw):
        obj = cls(**kw)
        for name in _text_fields(cls):
            setattr(obj, name, HOSTILE)
        return obj
    g = filled(GPU, index=0, processes=[filled(Process, pid=1)], pcie=Pcie(), nvlink=NvLink())
    g.throttle_reasons = [HOSTILE]
    g.topology = {HOSTILE: HOSTILE}
    g.errors = {HOSTILE: HOSTILE}
    inst = filled(Instance, name="x", kind="x", url="x", models=[filled(ModelInfo, name="x")],
                  bench=filled(BenchResult, time="x"))
    snap = filled(Snapshot, time="x", host="x", gpus=[g], instances=[inst],
                  alerts=[filled(Alert, kind="x", severity="x", subject="x", message="x")])
    clean_snapshot(snap)
    text = json.dumps(snap.to_dict(), ensure_ascii=False)
    assert raw_bad_in(json.loads(text).__repr__() and text) == []
    for cls in (GPU, Process, Instance, ModelInfo, BenchResult, Alert, Snapshot):
        assert _text_fields(cls), cls  # the walk saw text fields in every class
    assert snap.gpus[0].name.startswith("\\x1b]0;PWNED\\x07m")


def test_lists_are_bounded():
    from gpuwatch.sanitize import LIST_LIMITS, clean_snapshot
    snap = Snapshot(time="t", host="h", gpus=[GPU(index=i) for i in range(5000)])
    assert len(clean_snapshot(snap).gpus) == LIST_LIMITS["gpus"]


def test_nvml_gpu_name_and_error_strings_are_cleaned(sim):
    from gpuwatch.pipeline import Sampler
    box, lib, collector = sim("h100x8")
    box.spec = dataclasses.replace(box.spec, name="NVIDIA " + HOSTILE)
    s = Sampler(nvml=collector, host="h\x1b[2J")
    snap = s.sample()
    assert snap.gpus[0].name.startswith("NVIDIA \\x1b]0;PWNED") and snap.host == "h\\x1b[2J"
    assert raw_bad_in(json.dumps(snap.to_dict(), ensure_ascii=False)) == []


# ---- a hostile inference server, through every front end ----------------------------------------

def _label(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def hostile_vllm(peer, conn, request):
    path = path_of(request)
    m = _label(HOSTILE)
    if path == "/metrics":
        send(conn, f'vllm:num_requests_running{{model_name="{m}"}} 4\n'
                   f'vllm:num_requests_waiting{{model_name="{m}"}} 1\n'
                   f'vllm:generation_tokens_total{{model_name="{m}"}} 100\n')
    elif path == "/version":
        send_json(conn, {"version": HOSTILE})
    elif path == "/v1/models":
        send_json(conn, {"data": [{"id": HOSTILE}]})
    elif path == "/v1/completions":
        send_json(conn, {"error": {"message": "boom " + HOSTILE}}, status="500 Internal Server Error")
    else:
        send(conn, "no", status="404 Not Found")


@pytest.fixture
def vllm_peer():
    p = Peer(hostile_vllm)
    yield p
    p.close()


@pytest.mark.parametrize("fmt", ["--text", "--json"])
def test_snapshot_shows_a_hostile_servers_text_escaped(vllm_peer, fmt):
    rc, out, err, _, _ = run_measured(["snapshot", fmt, "--demo", "h100x8", "--no-discover", "--interval", "0.2",
                                       "--backend", vllm_peer.url + "/"], timeout=60)
    assert rc == 0, err
    assert raw_bad_in(out) == [] and raw_bad_in(err) == []
    if fmt == "--json":
        doc = json.loads(out)
        inst = next(i for i in doc["instances"] if i["url"].startswith(vllm_peer.url))
        assert inst["status"] == "up" and inst["requests_running"] == 4
        assert inst["models"][0]["name"].startswith("\\x1b]0;PWNED\\x07m\\x1b[2J")
        assert inst["version"].startswith("\\x1b]0;PWNED")
    else:
        assert "\\x1b]0;PWNED" in out


def test_doctor_shows_a_hostile_servers_text_escaped(vllm_peer):
    rc, out, err, _, _ = run_measured(["doctor", "--demo", "h100x8", "--no-discover", "--interval", "0.2",
                                       "--backend", vllm_peer.url], timeout=60)
    assert rc in (0, 1), err
    assert raw_bad_in(out) == [] and raw_bad_in(err) == []


def test_bench_shows_a_hostile_servers_text_escaped(vllm_peer):
    rc, out, err, _, _ = run_measured(["bench", vllm_peer.url], timeout=60)
    both = out + err
    assert rc == 1 and "HTTP 500 from /v1/completions" in both
    assert raw_bad_in(both) == []
    assert "\\x1b]0;PWNED" in both  # the model name, visibly


def hostile_prometheus(peer, conn, request):
    if b"label_replace" in request:
        send_json(conn, {"status": "success", "data": {"resultType": "vector", "result": []}})
        return
    result = [
        {"metric": {"__name__": "gpuwatch_gpu_info", "host": "box" + HOSTILE, "gpu": "0", "uuid": "u",
                    "name": HOSTILE, "pci_bus_id": "p"}, "value": [1.0, "1"]},
        {"metric": {"__name__": "gpuwatch_gpu_temperature_celsius", "host": "box" + HOSTILE, "gpu": "0",
                    "uuid": "u"}, "value": [1.0, "55"]},
        {"metric": {"__name__": "gpuwatch_alert", "host": "box" + HOSTILE, "kind": HOSTILE, "severity": "critical",
                    "subject": HOSTILE}, "value": [1.0, "1"]},
    ]
    send_json(conn, {"status": "success", "data": {"resultType": "vector", "result": result}})


@pytest.mark.parametrize("fmt", ["--text", "--json"])
def test_fleet_text_and_json_show_hostile_labels_escaped(fmt):
    peer = Peer(hostile_prometheus)
    try:
        rc, out, err, _, _ = run_measured(["snapshot", fmt, "--prometheus", peer.url], timeout=60)
    finally:
        peer.close()
    assert rc == 0, err
    assert raw_bad_in(out) == [] and raw_bad_in(err) == []
    if fmt == "--json":
        host = json.loads(out)["hosts"][0]
        assert host["host"].startswith("box\\x1b]0;PWNED") and host["gpus"][0]["name"].startswith("\\x1b]0;")
    else:
        assert "box\\x1b]0;PWNED" in out


# ---- the dashboard: wide, zero-width and emoji names keep card borders --------------------------

@pytest.mark.parametrize("name", ["NVIDIA 漢字漢字漢字漢字漢字漢字漢字漢字漢字漢字漢字漢字",
                                  "NVIDIA 😀😀😀👨\u200d👩\u200d👧❤\ufe0f🇩🇪 H100",
                                  "NVIDIA e\u0301\u0301\u0301 \u200b\u200b\u200b\u2060 H100 " + ESC_TITLE])
async def test_wide_and_zero_width_names_do_not_shift_card_borders(name):
    from gpuwatch.frontends.tui.app import GpuWatchApp
    from gpuwatch.pipeline import Sampler

    def clean_snapshot(snap):  # through the pipeline's boundary, as a live snapshot goes
        class Nvml:
            def collect(self):
                r = type("R", (), {})()
                r.driver_version = r.cuda_version = r.nvml_version = r.error = r.pid_namespace = None
                r.gpus = snap.gpus
                return r

            def close(self):
                pass

        class Servers(StubServers):
            def collect(self):
                return snap.instances
        s = Sampler(nvml=Nvml(), instances=Servers(), host=snap.host, analyzers=[])
        out = s.sample(wait_instances=True)
        s.close()
        return out

    class Source:
        live = False
        history = None
        alert_engine = None
        alert_log = None

        def next(self):
            gpus = [GPU(index=i, name=name, utilization_gpu_pct=50.0, memory_used_bytes=1 << 30,
                        memory_total_bytes=80 << 30, processes=[Process(pid=1, name=name, cmdline=name)])
                    for i in range(2)]
            inst = Instance(name=name, kind="vllm", url="http://x", status="up",
                            models=[ModelInfo(name=name)])
            return clean_snapshot(Snapshot(time="2026-11-23T10:00:00.000Z", host=name, gpus=gpus,
                                           instances=[inst]))

        def close(self):
            pass

    app = GpuWatchApp(Source(), interval=0.2)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause(0.6)
        lines = [s.text for s in app.screen._compositor.render_strips()]
        card_lines = [ln for ln in lines if "│" in ln or "╭" in ln or "╰" in ln]
    assert lines and all(cell_len(ln) == 140 for ln in lines)
    # every card's right border sits in the same column on each of its lines
    cols = {}
    for ln in card_lines:
        for i, ch in enumerate(ln):
            if ch in "╮╯":
                cols.setdefault(ch, set()).add(cell_len(ln[:i]))
    # two GPU cards and the instance card: three right borders, the same at top and bottom, and
    # every side border on the lines between sits in one of those columns
    assert cols and cols["╮"] == cols["╯"] and len(cols["╮"]) == 3, cols
    for ln in card_lines:
        sides = {cell_len(ln[:i]) for i, ch in enumerate(ln) if ch == "│"}
        assert not sides or sides & cols["╮"], (ln, cols)
    for ln in lines:
        assert raw_bad_in(ln) == []


def test_model_is_unchanged_for_clean_text():
    """The fast path: clean text passes through untouched (same object)."""
    from gpuwatch.sanitize import clean_snapshot
    s = "NVIDIA H100 80GB HBM3"
    g = GPU(index=0, name=s)
    clean_snapshot(Snapshot(time="t", host="h", gpus=[g]))
    assert g.name is s and model.SCHEMA_VERSION == 1
