"""The real process table (psutil) that discovery reads every scan: what it keeps between scans
(listening sockets, the process list, the parent map) is read again as soon as the box changes,
so a server that starts listening, a process that starts and a child that exits all show at the
next scan; and only what changed is read, not every process of the box."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from _instances_servers import wait_until
from gpuwatch.collect.procs import ProcessTable, listening_sockets


def _ports(table: ProcessTable) -> set[int]:
    return {lst.port for lst in table.listeners() if lst.pid == os.getpid()}


def test_a_socket_that_starts_listening_shows_at_the_next_scan_and_goes_when_closed():
    table = ProcessTable()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    try:
        assert port not in _ports(table)
        s.listen(1)
        assert port in _ports(table)
        assert port in _ports(table)  # unchanged box: the same answer
    finally:
        s.close()
    assert port not in _ports(table)


def test_the_kernel_lists_listening_sockets_by_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        got = listening_sockets()
        assert got is not None  # Linux: sock_diag answers
        assert s.getsockname()[1] in {port for _, port, _, _ in got}
    finally:
        s.close()


def test_a_started_process_and_its_exit_show_in_the_process_list_and_children():
    table = ProcessTable()
    before = {pid for pid, *_ in table.processes()}
    p = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", "gpuwatch-test-marker"],
                         stdin=subprocess.PIPE)
    try:
        listed = {pid: argv for pid, _name, argv, _t in table.processes()}
        assert p.pid not in before and "gpuwatch-test-marker" in listed[p.pid]
        assert p.pid in table.children(os.getpid())
    finally:
        p.stdin.close()
        p.wait(10)
    assert p.pid not in {pid for pid, *_ in table.processes()}
    assert p.pid not in table.children(os.getpid())


def test_a_pass_reads_only_the_processes_that_changed(monkeypatch):
    """On a box where some process always starts or ends, each discovery scan must cost what
    changed, not a read of every process (~0.25 ms each through psutil)."""
    import psutil

    table = ProcessTable()
    table.YOUNG_S = 0.0  # every process here counts as old: only new ones are read
    first = {pid for pid, *_ in table.processes()}
    read = []
    real = psutil.Process.cmdline

    def counting(self):  # every process a pass reads has its command line read
        read.append(self.pid)
        return real(self)

    monkeypatch.setattr(psutil.Process, "cmdline", counting)
    for _ in range(5):
        p = subprocess.Popen([sys.executable, "-c", "import sys; print('up', flush=True); sys.stdin.read()",
                              "gpuwatch-new-marker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        if p.pid not in first:
            break
        # a pid the first pass saw under another process (pids wrap at pid_max, 32768 on many
        # boxes, and a busy test run spends them fast): a pass keeps a known pid's name, see
        # ProcessTable._scan. Not what this test is about: another child
        p.stdin.close()
        p.wait(10)
    try:
        p.stdout.readline()  # up
        assert wait_until(timeout=10.0, pred=lambda: any("gpuwatch-new-marker" in argv for pid, _n, argv, _t in table.processes()))
        assert p.pid in read
        # a handful of processes started or ended meanwhile on a busy machine; not every process
        assert len(set(read)) < max(10, len(psutil.pids()) // 2), (len(set(read)), len(psutil.pids()))
    finally:
        p.stdin.close()
        p.wait(10)


def test_a_launcher_that_execs_the_server_shows_the_server_at_the_next_pass():
    """``exec vllm serve ...`` at the end of a script keeps the pid: a young process's command
    line is read again, so the server is seen once the script has exec'd."""
    table = ProcessTable()
    p = subprocess.Popen(["sh", "-c", f"read x; exec {sys.executable} -c 'import sys; sys.stdin.read()' gpuwatch-exec-marker"],
                         stdin=subprocess.PIPE)
    try:
        assert wait_until(timeout=10.0, pred=lambda: any(pid == p.pid for pid, *_ in table.processes()))
        assert not any("gpuwatch-exec-marker" in argv for _pid, _n, argv, _t in table.processes())
        p.stdin.write(b"go\n")
        p.stdin.flush()

        def execd():
            # (a pass runs when the set of pids changed: one more process while it looks)
            other = subprocess.Popen(["sleep", "5"])
            try:
                return any(pid == p.pid and "gpuwatch-exec-marker" in argv for pid, _n, argv, _t in table.processes())
            finally:
                other.kill()
                other.wait()
        assert wait_until(execd, timeout=10.0)
    finally:
        p.stdin.close()
        p.wait(10)


def test_a_child_whose_parent_ended_is_no_longer_counted_under_it():
    """A server's descendants: a process whose parent exits is handed to init (or a subreaper),
    and must leave the tree it was in, even though it is not new."""
    table = ProcessTable()
    table.YOUNG_S = 0.0  # not re-read for being young: only for having lost its parent
    middle = subprocess.Popen(["sh", "-c", "sleep 600 & echo $!; read x"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    orphan = int(middle.stdout.readline())
    try:
        assert wait_until(timeout=10.0, pred=lambda: orphan in table.children(os.getpid()))
        middle.stdin.write("go\n")
        middle.stdin.close()
        middle.wait(10)
        assert wait_until(timeout=10.0, pred=lambda: orphan not in table.children(os.getpid()))
    finally:
        try:
            os.kill(orphan, 9)
        except ProcessLookupError:
            pass


def test_cpu_and_memory_of_a_process_match_what_the_kernel_counts():
    """CPU % and RSS come from one read of /proc/<pid>/stat each tick: a spinning process reads
    what it burnt over the interval, a sleeping one about nothing, and RSS is what psutil says."""
    import time

    import psutil

    table = ProcessTable()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    idle = subprocess.Popen([sys.executable, "-c", "import sys; print('up', flush=True); sys.stdin.read()"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        idle.stdout.readline()  # started: from here on it sleeps
        pb = psutil.Process(busy.pid)
        table.info(busy.pid), table.info(idle.pid)
        c0, t0 = sum(pb.cpu_times()[:2]), time.monotonic()
        # on a loaded machine the spinner may get little CPU: wait until it has used some
        wait_until(lambda: sum(pb.cpu_times()[:2]) - c0 >= 0.3
                   and time.monotonic() - t0 > ProcessTable.MIN_CPU_S, timeout=60)
        got, quiet = table.info(busy.pid), table.info(idle.pid)
        truth = 100 * (sum(pb.cpu_times()[:2]) - c0) / (time.monotonic() - t0)
        assert got.cpu_pct == __import__("pytest").approx(truth, abs=15)
        # asked again a moment later (discovery between two ticks): the same figure, not one
        # CPU-time step over a few milliseconds (0 % or hundreds)
        assert table.info(busy.pid).cpu_pct == got.cpu_pct
        assert quiet.cpu_pct < 5
        assert abs(quiet.rss_bytes - psutil.Process(idle.pid).memory_info().rss) < 1 << 20
        assert quiet.name and "-c" in quiet.cmdline
    finally:
        busy.kill()
        idle.stdin.close()
        busy.wait(10), idle.wait(10)
    assert table.info(busy.pid) is None  # gone: nothing, and nothing kept


def test_a_reused_pid_is_read_afresh():
    """Another start time under a known pid is another process: its name is read again and its
    CPU % starts over instead of being differenced against the old process's counters."""
    table = ProcessTable()
    me = os.getpid()
    first = table.info(me)
    table._static[me][2].name = "old process"
    when, start, fields = table._static[me]
    table._static[me] = (when, start - 1, fields)  # as if the pid had belonged to an earlier process
    s, ticks, at, pct = table._cpu[me]
    table._cpu[me] = (s - 1, ticks + 10**9, at - 10, pct)
    again = table.info(me)
    assert again.name == first.name and again.cpu_pct == 0.0


def test_a_process_environment_is_read_and_follows_an_exec_then_goes_when_it_ends(monkeypatch):
    """Discovery reads a server's environment (Ollama's settings) at each scan. A launcher that
    execs the server keeps its pid but gets the server's environment: the new one is read; once
    the process is no longer young its environment is kept; a process that ended has none."""
    table = ProcessTable()
    server = "import sys; print('server', flush=True); sys.stdin.read()"
    launcher = ("import os, sys; print('launcher', flush=True); sys.stdin.readline(); "
                f"os.execve(sys.executable, [sys.executable, '-c', {server!r}], "
                "{**os.environ, 'OLLAMA_NUM_PARALLEL': '8'})")
    p = subprocess.Popen([sys.executable, "-c", launcher], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         env={**os.environ, "OLLAMA_NUM_PARALLEL": "4"}, text=True)
    try:
        assert p.stdout.readline() == "launcher\n"
        assert table.environ(p.pid)["OLLAMA_NUM_PARALLEL"] == "4"
        p.stdin.write("go\n")
        p.stdin.flush()
        assert p.stdout.readline() == "server\n"
        assert table.environ(p.pid)["OLLAMA_NUM_PARALLEL"] == "8"  # the same pid, exec'd
        monkeypatch.setattr(ProcessTable, "YOUNG_S", 0.0)
        assert table.environ(p.pid)["OLLAMA_NUM_PARALLEL"] == "8"  # no longer young: kept from here on
    finally:
        p.stdin.close()
        p.wait(10)
    assert table.environ(p.pid) is None
