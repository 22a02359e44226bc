"""Replay (pilot: seek, step, speed, pause), `snapshot --svg`, and the record -> replay path."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from conftest import run_cli, until
from gpuwatch.recording import open_recording
from gpuwatch.frontends.tui.replay import ReplayApp, ReplaySource, parse_seek
from gpuwatch.frontends.tui.widgets import GpuCard


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("rec") / "box.ndjson"
    r = run_cli("record", "-o", str(path), "--demo", "h100x8:lost=6", "--interval", "0.2", "--count", "40",
                "--no-discover")
    assert r.returncode == 0, r.stderr
    return path


def test_recording_has_whole_lines_with_alerts(recording):
    lines = recording.read_text().splitlines()
    assert len(lines) == 40
    docs = [json.loads(line) for line in lines]
    assert all(d["schema_version"] == 1 and len(d["gpus"]) == 8 for d in docs)


async def test_replay_seek_step_speed_and_pause(recording):
    rec = open_recording(recording)
    src = ReplaySource(rec, speed=1.0)
    app = ReplayApp(src)
    async with app.run_test(size=(160, 50)) as pilot:
        # a GPU card is selected from the start, and its list (a scroll view) has Home/End of its
        # own: with the list able to scroll (here made short), the keys must still jump
        await until(pilot, lambda: isinstance(app.focused, GpuCard), "a GPU card selected")
        gpus = app.query_one("#gpu-scroll")
        gpus.styles.height = 6
        await until(pilot, lambda: gpus.max_scroll_y > 0, "the GPU list able to scroll")
        assert "REPLAY" in app.query_one("#top").text  # the recorded time and position are on the top line
        # jump to the end, then step back
        await pilot.press("end")
        assert src.pos == len(rec) - 1
        await pilot.press("home")
        assert src.pos == 0
        await pilot.press("end")
        await pilot.press("comma", "comma")
        assert src.pos == len(rec) - 3 and not src.playing
        shown = app.snapshot.time
        assert shown == rec[len(rec) - 3].time
        # speed changes in steps
        await pilot.press("right_square_bracket")
        assert src.speed == 10.0
        await pilot.press("left_square_bracket", "left_square_bracket")
        assert src.speed == 1.0
        # seek by typing a time
        target = rec.time(5)
        await pilot.press("g")
        await pilot.pause(0.1)
        for ch in target.strftime("%H:%M:%S"):
            await pilot.press(ch)
        await pilot.press("enter")
        await pilot.pause(0.2)
        # lands on the first snapshot inside the typed second: the clock then reads what was typed
        shown_at = datetime.fromtimestamp(rec.times[src.pos], tz=timezone.utc)
        assert shown_at.strftime("%H:%M:%S") == target.strftime("%H:%M:%S")
        assert src.pos <= 5 and (src.pos == 0 or rec.times[src.pos - 1] < int(rec.times[5]))
        # space plays, and playback moves forward
        await pilot.press("space")
        assert src.playing
        await pilot.press("q")


def test_parse_seek_forms(recording):
    rec = open_recording(recording)
    src = ReplaySource(rec)
    assert parse_seek("start", src) == rec.times[0]
    assert parse_seek("end", src) == rec.times[-1]
    assert parse_seek("+2s", src) == pytest.approx(rec.times[src.pos] + 2)
    iso = datetime.fromtimestamp(rec.times[3], tz=timezone.utc).isoformat()
    assert parse_seek(iso, src) == pytest.approx(rec.times[3])
    with pytest.raises(ValueError):
        parse_seek("yesterday-ish", src)


def test_a_typed_clock_time_lands_inside_that_second(recording):
    """Snapshots 0.2 s apart, typed to the second: the first snapshot in that second, whatever the
    sub-second phase of the recording -- and the first second of the recording is not tomorrow."""
    rec = open_recording(recording)
    src = ReplaySource(rec)
    for k in (0, 3, 5, 17, len(rec) - 1):
        hhmmss = datetime.fromtimestamp(rec.times[k], tz=timezone.utc).strftime("%H:%M:%S")
        t = parse_seek(hhmmss, src)
        i = rec.seek_time(t)
        assert datetime.fromtimestamp(rec.times[i], tz=timezone.utc).strftime("%H:%M:%S") == hhmmss
        assert i == 0 or int(rec.times[i - 1]) < int(rec.times[i])


def test_replay_of_a_non_recording_is_one_line(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello\n")
    r = run_cli("replay", str(bad))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_snapshot_svg_of_the_demo(tmp_path):
    out = tmp_path / "shot.svg"
    r = run_cli("snapshot", "--svg", str(out), "--demo", "h100x8:hot", "--size", "160x50", "--no-discover")
    assert r.returncode == 0, r.stderr
    svg = out.read_text()
    assert svg.startswith("<svg") and "</svg>" in svg
    assert "GPU&#160;7" in svg or "GPU 7" in svg
    assert "THERMAL" in svg  # the hot GPU, after the simulated warm-up
    r = run_cli("snapshot", "--svg", str(tmp_path / "nodir" / "x.svg"), "--demo")
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1


def test_replay_takes_its_theme_from_the_config_file_unless_one_is_given(recording, tmp_path, monkeypatch):
    from gpuwatch.cli import main

    shown = []

    def run(self, *a, **kw):  # the app as built by `gpuwatch replay`, without a terminal
        shown.append(self.theme)

    monkeypatch.setattr(ReplayApp, "run", run)
    cfg = tmp_path / "config.toml"
    cfg.write_text('theme = "nvidia"\n')
    assert main(["replay", str(recording), "--config", str(cfg)]) == 0
    assert main(["replay", str(recording), "--config", str(cfg), "--theme", "gpuwatch-light"]) == 0
    assert shown == ["nvidia", "gpuwatch-light"]
