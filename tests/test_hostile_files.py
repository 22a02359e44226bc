"""Hostile input, findings 4, 6 and 8 (files and values the user gives): only regular files are
read as config, theme or recording (a FIFO or /dev/zero is one line, not a hang); broken themes
are a notice and a skip; damaged recording lines are skipped and counted, CRLF lines read; bad
URLs are one line and exit 2; two recorders cannot share a file, and a failed write never cuts
the file anywhere but at a line end that is in it."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, run_cli

LINE = ('{"schema_version":1,"time":"2026-11-23T10:00:0%dZ","host":"h","gpus":[{"index":0,"name":"H100",'
        '"temperature_c":5%d}]}')


# ---- only regular files ---------------------------------------------------------------------------

@pytest.fixture
def fifo(tmp_path):
    p = tmp_path / "fifo"
    os.mkfifo(p)
    return p


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "directory"])
def test_config_that_is_not_a_regular_file_is_one_line(kind, fifo, tmp_path):
    path = {"fifo": str(fifo), "/dev/zero": "/dev/zero", "directory": str(tmp_path)}[kind]
    start = time.monotonic()
    r = run_cli("snapshot", "--demo", "--no-discover", "--config", path, timeout=30)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "not a regular file" in r.stderr and "Traceback" not in r.stderr
    assert time.monotonic() - start < 20


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_replay_of_a_file_that_is_not_regular_is_one_line(kind, fifo):
    path = str(fifo) if kind == "fifo" else "/dev/zero"
    r = run_cli("replay", path, timeout=30)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "not a regular file" in r.stderr


def test_a_huge_config_is_refused(tmp_path):
    p = tmp_path / "big.toml"
    p.write_bytes(b"# " + b"x" * (2 << 20) + b"\n")
    r = run_cli("snapshot", "--demo", "--no-discover", "--config", str(p), timeout=30)
    assert r.returncode == 2 and "larger than" in r.stderr


# ---- themes ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("body, why", [
    ("primary = 5\n", "primary: 5 is not a colour"),
    ('primary = ["#fff"]\n', "is not a colour"),
    ('primary = "#ff0000"\n[variables]\nborder = "not a colour"\n', "variables.border"),
    ('primary = "#ff0000"\n[variables]\nfooter-key-foreground = "#zz"\n', "variables.footer-key-foreground"),
    ('primary = "#ff0000"\n[variables]\nblock-cursor-background = "$nope"\n', "names no known variable"),
    ('primary = "#ff0000"\n[variables]\n"a;b{" = "red"\n', "not a CSS variable name"),
    ("primary = \"#ff0000\"\n\xff\n", "not UTF-8"),
])
def test_broken_theme_files_are_reported_and_skipped(tmp_path, body, why):
    from gpuwatch.frontends.tui.themes import load_theme_files
    (tmp_path / "broken.toml").write_bytes(body.encode("utf-8", "surrogateescape") if "\xff" not in body
                                           else body.replace("\xff", "").encode() + b"\xff\n")
    (tmp_path / "fine.toml").write_text('primary = "#00ff00"\n[variables]\nborder = "#112233"\n')
    os.mkfifo(tmp_path / "pipe.toml")
    got = load_theme_files(tmp_path)
    assert [t.name for t in got.themes] == ["fine"]
    assert any(why in e for e in got.errors), got.errors
    assert any("pipe.toml" in e and "FIFO" in e for e in got.errors)


async def test_dashboard_with_a_broken_theme_starts_with_a_notice(tmp_path, monkeypatch):
    from gpuwatch.frontends.tui.app import GpuWatchApp, LiveSource
    from gpuwatch.pipeline import Monitor
    from gpuwatch.runtime import make_sampler

    themes = tmp_path / "gpuwatch" / "themes"
    themes.mkdir(parents=True)
    (themes / "bad.toml").write_text('name = "bad"\nprimary = "#ff0000"\n[variables]\nborder = "not a colour"\n')
    (themes / "five.toml").write_text("primary = 5\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monitor = Monitor(make_sampler(demo="h100x8", servers=False, discover=False))
    app = GpuWatchApp(LiveSource(monitor), theme="bad")
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause(0.5)
            assert app.is_running
            notes = [n.message for n in app._notifications]
            assert any("Broken theme files skipped" in n and "five.toml" in n and "bad.toml" in n for n in notes)
    finally:
        monitor.close()


# ---- recordings ----------------------------------------------------------------------------------------

def _write(path, lines, sep=b"\n"):
    path.write_bytes(sep.join(x if isinstance(x, bytes) else x.encode() for x in lines) + sep)
    return path


def test_crlf_recordings_read_every_line(tmp_path):
    from gpuwatch.recording import open_recording
    p = _write(tmp_path / "crlf.ndjson", [LINE % (i, i) for i in range(3)], sep=b"\r\n")
    with open_recording(p) as rec:
        assert len(rec) == 3 and [s.gpus[0].temperature_c for s in rec] == [50.0, 51.0, 52.0]


BAD_LINES = {
    "wrong shape": '{"schema_version":1,"time":"2026-11-23T10:00:01Z","host":"h","gpus":"abc"}',
    "gpu without index": '{"schema_version":1,"time":"2026-11-23T10:00:02Z","host":"h","gpus":[{"name":"x"}]}',
    "wrong types": ('{"schema_version":1,"time":"2026-11-23T10:00:03Z","host":"h","gpus":[{"index":0,'
                    '"temperature_c":"hot","name":5,"processes":[{"pid":"x"}],"pcie":7,"throttle_reasons":"x"}],'
                    '"instances":[{"name":"i","kind":"vllm","url":"u","models":"m","gpus":{"a":1}}],"alerts":[5]}'),
    "host not text": '{"schema_version":1,"time":"2026-11-23T10:00:04Z","host":{"a":1}}',
    "bad utf-8": b'{"schema_version":1,"time":"2026-11-23T10:00:05Z","host":"\xff\xfe"}',
    "deep": '{"schema_version":1,"time":"2026-11-23T10:00:06Z","host":"h","x":' + "[" * 100_000 + "]" * 100_000 + "}",
    "time not text": '{"schema_version":1,"time":"2026-11-23T10:00:07Z","host":"h","time":5}',
}


@pytest.fixture
def damaged(tmp_path):
    return _write(tmp_path / "damaged.ndjson", [LINE % (0, 0), *BAD_LINES.values(), LINE % (8, 8)])


def test_damaged_lines_are_skipped_with_a_count_never_a_traceback(damaged):
    from gpuwatch.recording import RecordingError, open_recording
    from gpuwatch.frontends.tui.replay import ReplaySource
    with open_recording(damaged) as rec:
        good, bad = [], []
        for i in range(len(rec)):
            try:
                good.append(rec[i])
            except RecordingError as e:
                bad.append(str(e))
        # the repairable one (wrong field types) is read with its bad fields null and the reasons kept
        repaired = [s for s in good if s.time.endswith("03Z")]
        assert repaired and repaired[0].gpus[0].temperature_c is None and repaired[0].gpus[0].name == "5"
        assert "temperature_c" in repaired[0].gpus[0].errors and repaired[0].instances[0].models == []
        assert all(len(m.splitlines()) == 1 for m in bad) and len(bad) >= 4
        src = ReplaySource(rec)
        for _ in range(len(rec) + 2):
            src.step(1)
            assert src.current() is not None
        assert len(src.bad) == len(bad)


async def test_replay_dashboard_walks_over_damaged_lines(damaged):
    from gpuwatch.recording import open_recording
    from gpuwatch.frontends.tui.replay import ReplayApp, ReplaySource
    rec = open_recording(damaged)
    app = ReplayApp(ReplaySource(rec, speed=600.0))
    async with app.run_test(size=(120, 40)) as pilot:
        for key in ("full_stop",) * 9 + ("home", "end", "comma", "comma"):
            await pilot.press(key)
        await pilot.pause(0.3)
        assert app.is_running
        top = app.query_one("#top").text
        assert "bad line" in top and "skipped" in top, top
    rec.close()


def test_replay_cli_of_only_damaged_lines_is_one_line(tmp_path):
    p = _write(tmp_path / "all-bad.ndjson", [BAD_LINES["host not text"], BAD_LINES["bad utf-8"]])
    r = run_cli("replay", str(p), timeout=30)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr


# ---- URLs ------------------------------------------------------------------------------------------------

BAD_URLS = ["http://127.0.0.1:99999", "http://[::1", "http://127.0.0.1:abc", "http://", "http://a b:80",
            "http://127.0.0.1:0", "ftp://x"]


@pytest.mark.parametrize("url", BAD_URLS)
@pytest.mark.parametrize("how", ["--backend", "--prometheus", "bench", "config-backend", "config-prometheus"])
def test_bad_urls_are_one_line_and_exit_2(url, how, tmp_path):
    cfg = tmp_path / "c.toml"
    if how == "--backend":
        args = ["snapshot", "--demo", "--no-discover", "--backend", url]
    elif how == "--prometheus":
        args = ["snapshot", "--prometheus", url]
    elif how == "bench":
        args = ["bench", url]
    elif how == "config-backend":
        cfg.write_text(f'[[backends]]\nurl = "{url}"\n')
        args = ["snapshot", "--demo", "--no-discover", "--config", str(cfg)]
    else:
        cfg.write_text(f'[prometheus]\nurl = "{url}"\n')
        args = ["snapshot", "--demo", "--no-discover", "--config", str(cfg)]
    r = run_cli(*args, timeout=30)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr


def test_non_finite_or_absurd_config_numbers_are_one_line(tmp_path):
    for body in ("interval = nan\n", "interval = inf\n", "[prometheus]\ntimeout_s = nan\n",
                 "[prometheus]\ntimeout_s = -1\n"):
        cfg = tmp_path / "c.toml"
        cfg.write_text(body)
        r = run_cli("snapshot", "--demo", "--no-discover", "--config", str(cfg), timeout=30)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, (body, r.stderr)


# ---- two recorders, one file ----------------------------------------------------------------------------

def test_a_second_recorder_on_the_same_file_is_refused(tmp_path):
    out = tmp_path / "rec.ndjson"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    first = subprocess.Popen([sys.executable, "-m", "gpuwatch", "record", "-o", str(out), "--append", "--demo",
                              "--no-discover", "--interval", "0.2", "--duration", "60"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while not (out.exists() and out.stat().st_size > 0):
            assert time.monotonic() < deadline and first.poll() is None, "the first recorder did not start"
            time.sleep(0.1)
        r = run_cli("record", "-o", str(out), "--append", "--demo", "--no-discover", "--count", "1", timeout=60)
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "being written by another gpuwatch record" in r.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(20)
    lines = out.read_bytes().splitlines()
    assert lines and all(json.loads(x)["schema_version"] == 1 for x in lines)


def _failing_write(monkeypatch, after_bytes: int):
    """The next write puts ``after_bytes`` on disk, then fails as a full disk does."""
    from gpuwatch.recording import writer as recorder

    def write_all(fd, data):
        os.write(fd, data[:after_bytes])
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(recorder, "_write_all", write_all)


def test_a_failed_write_never_extends_the_file_or_cuts_a_line(tmp_path, monkeypatch):
    """Another writer shortened the file behind our back (as a second recorder truncating to its
    own idea of the size did): a failed write must not ftruncate forward (NUL bytes, a cut
    line) nor back past what is there."""
    from gpuwatch.recording.writer import LineFile, RecordError
    p = tmp_path / "r.ndjson"
    f = LineFile(p)
    a, b = (LINE % (0, 0) + "\n").encode(), (LINE % (1, 1) + "\n").encode()
    f.write(a)
    f.write(b)
    os.truncate(p, len(a) + 10)  # someone else cut our second line
    _failing_write(monkeypatch, 7)
    with pytest.raises(RecordError):
        f.write(a)
    f._close_fd()
    data = p.read_bytes()
    assert b"\x00" not in data and data.startswith(a)
    assert len(data) <= len(a) + 10 + 7


def test_a_failed_write_cuts_back_to_our_line_end(tmp_path, monkeypatch):
    from gpuwatch.recording.writer import LineFile, RecordError
    p = tmp_path / "r.ndjson"
    f = LineFile(p)
    a = (LINE % (0, 0) + "\n").encode()
    f.write(a)
    _failing_write(monkeypatch, 9)
    with pytest.raises(RecordError):
        f.write(a)
    f._close_fd()
    assert p.read_bytes() == a
