"""The recording format and its reader (in-process): whole lines, gzip, damage, seeking, rotation."""

from __future__ import annotations

import errno
import gzip
import json
import os
import random
from datetime import datetime, timedelta, timezone

import pytest

from gpuwatch.recording import writer as recorder_mod
from gpuwatch.recording import reader as recording_mod
from gpuwatch.recording.writer import LineFile, RecordError, RecordingWriter
from gpuwatch.recording import (PREFIX, RecordingError, encode_snapshot, open_recording, rotated_name,
                                          rotated_siblings)
from gpuwatch.model import Snapshot
from recording_util import assert_whole_schema_lines, demo_snapshots


@pytest.fixture(scope="module")
def snaps():
    return demo_snapshots(24)


@pytest.fixture(scope="module")
def lines(snaps):
    return [encode_snapshot(s) for s in snaps]


def write_with(path, lines):
    f = LineFile(path)
    for line in lines:
        f.write(line)
    f.close()


def test_line_is_compact_schema_v1_with_time_first_and_round_trips(snaps, lines):
    for snap, line in zip(snaps, lines):
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert line.startswith(PREFIX + snap.time.encode() + b'"')
        d = json.loads(line)
        assert d == snap.to_dict()
        assert Snapshot.from_dict(d) == snap
    d = json.loads(lines[3])
    assert len(d["gpus"]) == 8 and d["gpus"][0]["processes"] and d["gpus"][0]["pcie"]["rx_bytes_per_s"] > 0
    assert [i["name"] for i in d["instances"]] == ["vllm-main", "sglang:30000"]
    assert d["instances"][1]["bench"]["generation_tokens_per_s"] == 88.1


@pytest.mark.parametrize("spec", ["h100x8:hot", "ollama3x:lost=2"])
def test_a_line_holds_the_bytes_of_to_dict_for_every_part_of_a_snapshot(spec):
    """Recording lines and ``to_dict`` are built without dataclasses.asdict (model.plain): the
    same bytes as asdict gives, for snapshots with alerts, pools, processes, lost GPUs and
    instances."""
    import dataclasses

    from gpuwatch.analysis.alert_config import AlertConfig
    from gpuwatch.analysis.alerts import AlertEngine
    from gpuwatch.model import Alert, Pool

    snaps = demo_snapshots(3, spec=spec)
    engine = AlertEngine(AlertConfig())
    for snap in snaps:
        engine.update(snap)
    snaps[-1].alerts.append(Alert(kind="thermal_throttle", severity="warning", subject="gpu 0", message="hot"))
    snaps[-1].pools.append(Pool(name="p", source="/etc/nginx/nginx.conf:12", method="least_conn"))
    for snap in snaps:
        reference = dataclasses.asdict(snap)
        reference = {"schema_version": reference.pop("schema_version"), **reference}
        assert snap.to_dict() == reference and list(snap.to_dict()) == list(reference)
        assert encode_snapshot(snap) == json.dumps(reference, separators=(",", ":"), allow_nan=False).encode() + b"\n"


@pytest.mark.parametrize("name", ["rec.ndjson", "rec.ndjson.gz"])
def test_reader_gives_back_every_snapshot_plain_and_gzip(tmp_path, snaps, lines, name):
    path = tmp_path / name
    write_with(path, lines)
    raw = path.read_bytes()
    if name.endswith(".gz"):
        assert raw[:2] == b"\x1f\x8b"
        raw = gzip.decompress(raw)  # a complete, standard gzip file (trailer checked)
    assert raw == b"".join(lines)
    with open_recording(path) as rec:
        assert rec.warnings == []
        assert len(rec) == len(snaps)
        for i in (0, 5, len(snaps) - 1, 3, -1):
            assert rec[i] == snaps[i]
        assert rec.raw(2) == snaps[2].to_dict()
        assert [s.time for s in rec] == [s.time for s in snaps]
        assert rec.start == datetime.fromisoformat(snaps[0].time.replace("Z", "+00:00"))
        assert rec.end == datetime.fromisoformat(snaps[-1].time.replace("Z", "+00:00"))
        assert rec.times[1] - rec.times[0] == pytest.approx(1.0, abs=1e-3)
        with pytest.raises(IndexError):
            rec[len(snaps)]


def test_gzip_random_access_across_checkpoints(tmp_path, lines, monkeypatch):
    monkeypatch.setattr(recording_mod, "_CHECKPOINT_EVERY", 20_000)  # a checkpoint every ~2 lines
    monkeypatch.setattr(recording_mod, "_GZ_CHUNK", 256)
    path = tmp_path / "r.ndjson.gz"
    write_with(path, lines)
    rec = open_recording(path, cache_size=1)
    assert len(rec._sources[0]._cp) > 5
    order = list(range(len(lines))) * 2
    random.Random(7).shuffle(order)
    for i in order:
        assert rec.raw_line(i) + b"\n" == lines[i]
    rec.close()


def test_cut_last_line_is_skipped_with_a_warning(tmp_path, lines):
    path = tmp_path / "r.ndjson"
    path.write_bytes(b"".join(lines[:5]) + lines[5][: len(lines[5]) // 2])
    rec = open_recording(path)
    assert len(rec) == 5
    assert len(rec.warnings) == 1 and "line 6" in rec.warnings[0] and "cut short" in rec.warnings[0]
    assert rec[-1].time == json.loads(lines[4])["time"]


def test_corrupt_lines_in_the_middle_are_skipped_and_named(tmp_path, lines):
    path = tmp_path / "r.ndjson"
    bad_cut = lines[2][:300] + b"\n"  # a line cut short, then more lines (an --append after a crash)
    other = b'{"schema_version":2,"time":"2026-11-23T08:00:00.000Z"}\n'
    path.write_bytes(lines[0] + lines[1] + bad_cut + lines[3] + b'{"hello": "world"}\n' + other + lines[4])
    rec = open_recording(path)
    assert len(rec) == 4
    assert [rec.where(i).rsplit(" ", 1)[1] for i in range(4)] == ["1", "2", "4", "7"]
    text = "\n".join(rec.warnings)
    assert "line 3 is not a whole JSON object" in text
    assert "line 5 is not a gpuwatch snapshot" in text
    assert "line 6 has schema_version 2" in text
    assert rec[2] == Snapshot.from_dict(json.loads(lines[3]))


def test_damage_the_index_cannot_see_is_reported_on_access(tmp_path, lines):
    path = tmp_path / "r.ndjson"
    broken = lines[1][:200] + b"#" + lines[1][201:]  # a flipped byte inside an otherwise whole line
    path.write_bytes(lines[0] + broken + lines[2])
    rec = open_recording(path)
    assert len(rec) == 3 and rec[2].time == json.loads(lines[2])["time"]
    with pytest.raises(RecordingError, match=r"r\.ndjson line 2 is not valid JSON"):
        rec[1]


def test_other_writers_spacing_is_read(tmp_path, snaps):
    path = tmp_path / "r.ndjson"
    path.write_text("".join(json.dumps(s.to_dict()) + "\n" for s in snaps[:3]))  # ", " and ": " spacing
    rec = open_recording(path)
    assert len(rec) == 3 and rec.warnings == [] and rec[1] == snaps[1]


@pytest.mark.parametrize("content,why", [
    (b"", "holds no snapshots"),
    (b"name,value\nfoo,1\n", "line 1 is not a whole JSON object"),
    (b'{"hello": "world"}\n', "line 1 is not a gpuwatch snapshot"),
    (bytes(range(256)) * 4, "not a gpuwatch recording"),
])
def test_not_a_recording_is_one_clear_error(tmp_path, content, why):
    path = tmp_path / "data.ndjson"
    path.write_bytes(content)
    with pytest.raises(RecordingError) as e:
        open_recording(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and why in msg


def test_unreadable_paths_are_one_clear_error(tmp_path):
    (tmp_path / "fake.gz").write_bytes(b"not gzip at all\n")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(b"x" * 1000)[:15])
    for path, why in ((tmp_path / "missing.ndjson", "No such file"), (tmp_path, "is a directory"),
                      (tmp_path / "fake.gz", "is not gzip data"), (tmp_path / "cut.gz", "not a gpuwatch recording")):
        with pytest.raises(RecordingError, match=why) as e:
            open_recording(path)
        assert "\n" not in str(e.value)


def test_gzip_cut_anywhere_in_the_last_line_gives_every_whole_line(tmp_path, lines):
    path = tmp_path / "r.ndjson.gz"
    f = LineFile(path)
    for line in lines[:6]:
        f.write(line)
    good = f.size
    f.write(lines[6])
    whole = path.read_bytes()  # 7 lines, sync-flushed, the stream not ended (as after kill -9)
    f._close_fd()
    # the last 4 bytes are the sync-flush marker: the line's text is all before them
    for cut, n in ((good, 6), (good + 1, 6), (good + (len(whole) - good) // 2, 6), (len(whole) - 12, 6),
                   (len(whole), 7)):
        path.write_bytes(whole[:cut])
        rec = open_recording(path)
        assert len(rec) == n, cut
        assert rec[n - 1] == Snapshot.from_dict(json.loads(lines[n - 1]))
        cut_warnings = [w for w in rec.warnings if "cut short" in w]
        assert len(cut_warnings) <= 1
        assert any("gzip stream has no end" in w for w in rec.warnings)
        rec.close()


def test_concatenated_gzip_files_read_as_one(tmp_path, lines):
    a, b = tmp_path / "a.ndjson.gz", tmp_path / "b.ndjson.gz"
    write_with(a, lines[:4])
    write_with(b, lines[4:9])
    both = tmp_path / "ab.ndjson.gz"
    both.write_bytes(a.read_bytes() + b.read_bytes())  # `cat a.gz b.gz`
    rec = open_recording(both)
    assert len(rec) == 9 and rec.warnings == []
    assert rec[8] == Snapshot.from_dict(json.loads(lines[8]))


def test_damaged_gzip_is_reported_and_the_lines_before_the_damage_kept(tmp_path, lines):
    path = tmp_path / "r.ndjson.gz"
    write_with(path, lines[:12])
    data = bytearray(path.read_bytes())
    for k in range(len(data) // 2, len(data) // 2 + 40):
        data[k] ^= 0x5A
    path.write_bytes(bytes(data))
    rec = open_recording(path)
    # deflate has no check per block (only the CRC at the end), so the damage shows as a
    # warning, and a garbled line as an error when it is decoded -- never as a crash
    assert any("gzip data is damaged" in w for w in rec.warnings)
    assert rec[0] == Snapshot.from_dict(json.loads(lines[0]))
    for i in range(len(rec)):  # a garbled line may even decode (with wrong values): the warning says so
        try:
            assert isinstance(rec[i], Snapshot)
        except RecordingError as e:
            assert " line " in str(e) and "\n" not in str(e)


def test_seek_time(tmp_path, snaps, lines):
    path = tmp_path / "r.ndjson"
    write_with(path, lines)
    rec = open_recording(path)
    t0 = rec.start
    assert rec.seek_time(t0) == 0
    assert rec.seek_time(t0 - timedelta(hours=1)) == 0
    assert rec.seek_time(t0 + timedelta(seconds=5.5)) == 5
    assert rec.seek_time(t0 + timedelta(seconds=6)) == 6
    assert rec.seek_time(t0 + timedelta(days=1)) == len(snaps) - 1
    assert rec.seek_time(snaps[7].time) == 7
    assert rec.seek_time(rec.times[9] + 0.2) == 9
    naive = (t0 + timedelta(seconds=3)).astimezone(timezone.utc).replace(tzinfo=None)
    assert rec.seek_time(naive) == 3  # naive means UTC


def test_writer_never_clobbers_and_appends_after_a_cut_line(tmp_path, lines):
    path = tmp_path / "r.ndjson"
    path.write_bytes(lines[0] + lines[1][:100])  # a recording that was killed mid-line
    with pytest.raises(RecordError, match="already exists: pass --append"):
        LineFile(path)
    assert path.read_bytes() == lines[0] + lines[1][:100]
    f = LineFile(path, append=True)
    f.write(lines[2])
    f.close()
    rec = open_recording(path)
    assert len(rec) == 2 and rec[1] == Snapshot.from_dict(json.loads(lines[2]))
    assert len(rec.warnings) == 1 and "line 2" in rec.warnings[0]
    gz = tmp_path / "r.ndjson.gz"
    write_with(gz, lines[:2])
    with pytest.raises(RecordError, match="appending to a gzip recording is not supported"):
        LineFile(gz, append=True)


@pytest.mark.parametrize("name", ["r.ndjson", "r.ndjson.gz"])
def test_failed_write_truncates_back_to_the_last_whole_line(tmp_path, lines, monkeypatch, name):
    path = tmp_path / name
    f = LineFile(path)
    for line in lines[:3]:
        f.write(line)
    good = path.read_bytes()
    real_write = os.write
    calls = []

    def full_disk(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data)[: len(data) // 2])  # part of the line gets out...
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # ... then the disk is full

    monkeypatch.setattr(recorder_mod.os, "write", full_disk)
    with pytest.raises(RecordError, match="No space left on device; it holds every snapshot before this one"):
        f.write(lines[3])
    monkeypatch.setattr(recorder_mod.os, "write", real_write)
    assert path.read_bytes() == good
    f.close()  # a gzip file is still ended properly: the compressor was rolled back
    data = path.read_bytes()
    assert_whole_schema_lines(gzip.decompress(data) if name.endswith(".gz") else data)
    rec = open_recording(path)
    assert len(rec) == 3 and rec.warnings == []


def test_rotation_keeps_the_newest_files_with_bounded_sizes(tmp_path, lines):
    path = tmp_path / "gpu.ndjson"
    limit = 3 * len(lines[0])  # about three lines per file
    w = RecordingWriter(path, rotate_bytes=limit, keep=3)
    for line in lines:
        w.write(line)
    w.close()
    rotated = rotated_siblings(path)
    assert [p.name for _, p in rotated] == [rotated_name(path, s).name for s in range(w.rotations - 2,
                                                                                        w.rotations + 1)]
    assert rotated[0][1].name.startswith("gpu.0000") and rotated[0][1].name.endswith(".ndjson")
    longest = max(len(x) for x in lines)
    for _, p in rotated:
        assert p.stat().st_size <= limit + longest
    # the kept files and the current one hold the newest lines, in order
    rec = open_recording(path, rotated=True)
    assert rec.warnings == []
    kept = b"".join(p.read_bytes() for _, p in rotated) + path.read_bytes()
    assert kept == b"".join(lines[len(lines) - len(rec):])
    assert [s.time for s in rec] == [json.loads(x)["time"] for x in lines[len(lines) - len(rec):]]
    # a later run continues the numbering and prunes by the same rule
    path.unlink()
    w = RecordingWriter(path, rotate_bytes=limit, keep=3)
    for line in lines[:4]:
        w.write(line)
    w.close()
    assert [s for s, _ in rotated_siblings(path)] == [w2 for w2 in range(rotated[1][0], rotated[-1][0] + 2)]


def test_rotation_of_gzip_files(tmp_path, lines):
    path = tmp_path / "gpu.ndjson.gz"
    w = RecordingWriter(path, rotate_bytes=4000, keep=100)
    for line in lines:
        w.write(line)
    w.close()
    files = [p for _, p in rotated_siblings(path)] + [path]
    assert len(files) > 2 and all(p.name.endswith(".ndjson.gz") for p in files)
    assert b"".join(gzip.decompress(p.read_bytes()) for p in files) == b"".join(lines)
    rec = open_recording(path, rotated=True)
    assert len(rec) == len(lines) and rec.warnings == []


class _StubSampler:
    def __init__(self, snaps):
        self.snaps = list(snaps)
        self.waits = []

    def sample(self, wait_instances=False):
        self.waits.append(wait_instances)
        return self.snaps.pop(0)


def test_recorder_runs_each_snapshot_through_analysis_and_finishes_the_line_on_stop(tmp_path, snaps):
    from gpuwatch.recording.writer import Recorder
    from gpuwatch.model import Alert

    path = tmp_path / "r.ndjson"
    w = RecordingWriter(path)
    seen = []

    def analyze(snap):  # the alert engine's shape: annotate the snapshot in place
        seen.append(snap.time)
        snap.alerts = [Alert(kind="thermal_throttle", severity="warning", subject="GPU 3",
                             message=f"GPU 3 is throttling ({len(seen)})", since=snaps[0].time)]
        if len(seen) == 3:
            rec.request_stop("SIGTERM")  # a signal arriving mid-work: this line is still written

    sampler = _StubSampler(copy_snaps(snaps[:10]))
    rec = Recorder(sampler, w, interval=0.01, analyze=analyze)
    assert rec.run() == 3
    w.close()
    assert sampler.waits == [True, False, False]  # only the first sample waits for the servers
    docs = assert_whole_schema_lines(path.read_bytes())
    assert [d["alerts"][0]["message"] for d in docs] == [f"GPU 3 is throttling ({i})" for i in (1, 2, 3)]
    assert open_recording(path)[2].alerts[0].subject == "GPU 3"


def copy_snaps(snaps):
    import copy
    return [copy.deepcopy(s) for s in snaps]


def test_recorder_keeps_a_steady_cadence_when_sampling_is_slow(tmp_path, snaps):
    from gpuwatch.recording.writer import Recorder

    now = [100.0]
    slept = []

    class SlowSampler(_StubSampler):
        def sample(self, wait_instances=False):
            now[0] += 0.3  # each sample takes 0.3 s of a 1 s interval
            return super().sample(wait_instances)

    rec = Recorder(SlowSampler(copy_snaps(snaps[:10])), RecordingWriter(tmp_path / "r.ndjson"), interval=1.0,
                   count=4, clock=lambda: now[0])
    rec._sleep = lambda s: (slept.append(round(s, 6)), now.__setitem__(0, now[0] + s))
    assert rec.run() == 4
    assert slept == [0.7, 0.7, 0.7]  # sleep to the next deadline, not a full interval after the work
    rec.writer.close()
