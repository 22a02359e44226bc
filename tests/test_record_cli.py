"""`gpuwatch record` as a real subprocess: stop conditions, signals, kill -9, full disk, bad paths."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from gpuwatch.recording import open_recording
from recording_util import assert_whole_schema_lines

FAST = ("--demo", "--no-discover", "--interval", "0.1")


def _env():
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def _default_stop_signals() -> None:
    """In the child: SIGINT/SIGTERM/SIGHUP as a foreground command gets them. A test run started
    in the background by a non-interactive shell hands its children SIGINT ignored, and the
    recorder rightly keeps a signal its parent ignored (as `nohup` relies on for SIGHUP)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def start(*args, **kw) -> subprocess.Popen:
    kw.setdefault("preexec_fn", _default_stop_signals)
    return subprocess.Popen([sys.executable, "-m", "gpuwatch", "record", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_env(), cwd=ROOT, **kw)


def text_of(path: Path) -> bytes:
    """The text of a recording so far (a gzip stream may be unfinished)."""
    data = path.read_bytes() if path.exists() else b""
    if path.name.endswith(".gz") and data:
        return zlib.decompressobj(31).decompress(data)
    return data


def wait_lines(path: Path, n: int, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if text_of(path).count(b"\n") >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"recorder exited early: {proc.returncode} {proc.stderr.read()!r}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no {n} lines in {path} after {timeout}s")


def test_count_writes_exactly_n_whole_schema_lines_and_nothing_on_a_pipe(tmp_path):
    out = tmp_path / "rec.ndjson"
    r = run_cli("record", "-o", str(out), "--count", "4", *FAST)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""  # progress is for terminals only
    docs = assert_whole_schema_lines(out.read_bytes())
    assert len(docs) == 4
    assert all(len(d["gpus"]) == 8 and d["source"] == "simulated" for d in docs)
    assert docs[0]["gpus"][0]["pcie"]["rx_bytes_per_s"] is None  # the first sample has no rates yet...
    assert docs[1]["gpus"][0]["pcie"]["rx_bytes_per_s"] > 0  # ... the next ones do


def test_duration_on_a_steady_cadence(tmp_path):
    """Samples are due at 0, 0.2, 0.4, 0.6 and 0.8 s of a 1 s recording: one per slot, none
    outside the duration. (A sample that overruns its slot makes the recorder skip the next,
    so a busy machine may record fewer; the schedule itself is tested on a driven clock in
    test_record_reader.)"""
    out = tmp_path / "rec.ndjson.gz"
    r = run_cli("record", "-o", str(out), "--duration", "1.0", "--demo", "--no-discover", "--interval", "0.2")
    assert r.returncode == 0, r.stderr
    docs = assert_whole_schema_lines(gzip.decompress(out.read_bytes()))  # a properly ended gzip file
    assert 1 <= len(docs) <= 5
    with open_recording(out) as rec:
        offsets = [t - rec.times[0] for t in rec.times]
    slots = [round(o / 0.2) for o in offsets]
    assert slots == sorted(set(slots)) and slots[-1] <= 4, offsets  # one sample per slot, within 1 s


@pytest.mark.parametrize("sig,name", [(signal.SIGTERM, "rec.ndjson"), (signal.SIGINT, "rec.ndjson"),
                                      (signal.SIGHUP, "rec.ndjson"), (signal.SIGTERM, "rec.ndjson.gz")])
def test_stop_signals_finish_the_line_and_exit_0(tmp_path, sig, name):
    out = tmp_path / name
    proc = start("-o", str(out), *FAST)
    wait_lines(out, 3, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err
    data = out.read_bytes()
    if name.endswith(".gz"):
        data = gzip.decompress(data)  # ended cleanly: a complete gzip file, trailer and all
    assert len(assert_whole_schema_lines(data)) >= 3
    with open_recording(out) as rec:
        assert rec.warnings == []


def test_under_nohup_a_hangup_does_not_stop_the_recording(tmp_path):
    out = tmp_path / "rec.ndjson"
    proc = start("-o", str(out), *FAST, preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    wait_lines(out, 2, proc)
    proc.send_signal(signal.SIGHUP)
    n = text_of(out).count(b"\n")
    wait_lines(out, n + 3, proc)  # still recording
    proc.terminate()
    assert proc.wait(timeout=15) == 0
    assert_whole_schema_lines(out.read_bytes())


@pytest.mark.parametrize("name", ["rec.ndjson", "rec.ndjson.gz"])
def test_kill_9_loses_at_most_the_line_in_progress(tmp_path, name):
    out = tmp_path / name
    proc = start("-o", str(out), *FAST)
    wait_lines(out, 4, proc)
    seen = text_of(out).count(b"\n")
    proc.kill()
    proc.wait(timeout=10)
    rec = open_recording(out)
    assert len(rec) >= seen
    cut = [w for w in rec.warnings if "cut short" in w]
    assert len(cut) <= 1
    assert all("cut short" in w or "gzip stream has no end" in w for w in rec.warnings), rec.warnings
    if name.endswith(".gz"):
        assert any("gzip stream has no end" in w for w in rec.warnings)
    for i in range(len(rec)):
        assert len(rec[i].gpus) == 8


def test_an_existing_file_is_never_clobbered_and_append_adds(tmp_path):
    out = tmp_path / "rec.ndjson"
    assert run_cli("record", "-o", str(out), "--count", "2", *FAST).returncode == 0
    before = out.read_bytes()
    r = run_cli("record", "-o", str(out), "--count", "2", *FAST)
    assert r.returncode == 1
    assert r.stderr.strip() == f"gpuwatch: {out} already exists: pass --append to add to it, or choose another name"
    assert out.read_bytes() == before
    r = run_cli("record", "-o", str(out), "--count", "3", "--append", *FAST)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes().startswith(before)
    assert len(assert_whole_schema_lines(out.read_bytes())) == 5


def test_unwritable_paths_are_one_line_and_leave_nothing(tmp_path):
    plain = tmp_path / "a-file"
    plain.write_text("x")
    cases = [(plain / "rec.ndjson", "Not a directory"), (tmp_path / "no" / "dir" / "rec.ndjson", "No such file"),
             (tmp_path, "Is a directory"), (Path("/proc/version/rec.ndjson.gz"), "")]
    for path, why in cases:
        r = run_cli("record", "-o", str(path), "--count", "2", *FAST)
        assert r.returncode == 1, (path, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"gpuwatch: cannot create {path}"), r.stderr
        assert why in lines[0] and "Traceback" not in r.stderr
    assert plain.read_text() == "x"


def _mount_tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0 or not Path("/proc/mounts").exists():
        return False
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return r.returncode == 0


@pytest.mark.parametrize("name", ["rec.ndjson", "rec.ndjson.gz"])
def test_disk_full_is_one_line_exit_1_and_every_earlier_line_whole(tmp_path, name):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "64k"):
        pytest.skip("cannot mount a 64 KiB tmpfs here (needs root and mount permission); "
                    "test_failed_write_truncates_back_to_the_last_whole_line covers the logic")
    try:
        out = disk / name
        # gzip lines after the first are small (~0.3 KiB): fill most of the disk so it ends soon
        if name.endswith(".gz"):
            (disk / "ballast").write_bytes(os.urandom(60 * 1024))
        r = run_cli("record", "-o", str(out), "--count", "500", *FAST, timeout=90)
        assert r.returncode == 1, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "No space left on device" in lines[0], r.stderr
        assert "Traceback" not in r.stderr
        data = out.read_bytes()
        text = zlib.decompressobj(31).decompress(data) if name.endswith(".gz") else data
        docs = assert_whole_schema_lines(text)
        assert len(docs) >= 2
        with open_recording(out) as rec:
            assert len(rec) == len(docs)
            assert not [w for w in rec.warnings if "cut short" in w]
    finally:
        r = subprocess.run(["umount", str(disk)], capture_output=True, text=True)
        assert r.returncode == 0, f"could not unmount the test tmpfs {disk}: {r.stderr}"


def test_rotation_from_the_command_line(tmp_path):
    out = tmp_path / "rec.ndjson"
    r = run_cli("record", "-o", str(out), "--count", "12", "--rotate-mb", "0.03", "--keep", "2", *FAST)
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[-1] == "rec.ndjson" and len(names) == 3
    assert all(n.startswith("rec.0000") for n in names[:2])
    for p in tmp_path.iterdir():
        assert p.stat().st_size <= 0.03 * 2**20 + 20_000
        assert_whole_schema_lines(p.read_bytes())
    rec = open_recording(out, rotated=True)
    assert rec.monotonic and rec.warnings == [] and 3 <= len(rec) < 12


def test_progress_on_a_terminal(tmp_path):
    import pty
    out = tmp_path / "rec.ndjson"
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "gpuwatch", "record", "-o", str(out), "--count", "3", *FAST],
                            stdout=subprocess.DEVNULL, stderr=slave, env=_env(), cwd=ROOT)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the other end closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=20) == 0
    shown = b"".join(chunks).decode()
    assert "recording rec.ndjson: 3 snapshots" in shown and "KiB" in shown


def test_bad_record_flags_are_one_line_exit_2(tmp_path):
    out = str(tmp_path / "r.ndjson")
    for args in (["record"], ["record", "-o", out, "--count", "0"], ["record", "-o", out, "--count", "2",
                 "--duration", "3"], ["record", "-o", out, "--rotate-mb", "big"], ["record", "-o", out,
                 "--duration", "-1"], ["record", "-o", out, "--keep", "0"],
                 ["record", "-o", out, "--demo", "h100x8:melt"]):  # found after the file is opened: removed
        r = run_cli(*args)
        assert r.returncode == 2, args
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("gpuwatch: "), (args, r.stderr)
    assert not Path(out).exists()
