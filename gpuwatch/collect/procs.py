"""The process table: what the OS says about a pid (name, user, command line, CPU, RSS,
affinity, children, listening sockets).

NVML only knows pids and GPU memory; gpuwatch joins them with this table. The real table
is psutil; the simulated box supplies its own (``gpuwatch.sim.procs``) with the same
interface, so the join and discovery code is the same in the demo and on a real box.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

import psutil


@dataclass
class ProcInfo:
    pid: int
    name: str | None = None
    cmdline: list[str] = field(default_factory=list)
    user: str | None = None
    cpu_pct: float | None = None
    rss_bytes: int | None = None
    ppid: int | None = None
    cpu_affinity: list[int] | None = None
    environ: dict[str, str] | None = None


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(start time, user + system CPU time, both in clock ticks; resident pages) of a process,
    from one read of ``/proc/<pid>/stat`` (proc(5): fields 14, 15, 22 and 24, counted after the
    command name, which may hold spaces and parentheses: hence the last ``)``). The resident
    pages are statm's, which psutil's ``memory_info().rss`` reads. None when the process is
    gone or cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        fields = data[data.rindex(b")") + 2:].split()
        return int(fields[19]), int(fields[11]) + int(fields[12]), int(fields[21])
    except (OSError, ValueError, IndexError):
        return None


def listening_sockets() -> frozenset | None:
    """(family, port, address, inode) of every listening TCP socket, from the kernel's sock_diag
    netlink interface (Linux, ``ss -lt``'s source); None where it cannot be asked. Not
    /proc/net/tcp (psutil's source): the kernel builds that text by walking its whole connection
    hash table, 11 ms of CPU a read on the benchmark VM against 0.1 ms here, where the kernel
    filters for LISTEN itself. No maintained Python library asks sock_diag without bringing a
    netlink framework (pyroute2); the request and answer layouts are linux/inet_diag.h's."""
    try:
        return frozenset(_diag(socket.AF_INET) + _diag(socket.AF_INET6))
    except (OSError, AttributeError, struct.error):
        return None


def loopback_ports(sockets: frozenset) -> dict[int, frozenset]:
    """Of ``listening_sockets()``: each port a connection to 127.0.0.1 can reach (a socket on a
    wildcard or loopback address, IPv4 or IPv6), with the inodes of its listening sockets (a
    restarted server listens on a new socket)."""
    out: dict[int, set] = {}
    for family, port, addr, inode in sockets:
        if family == socket.AF_INET:
            ok = addr[:4] == bytes(4) or addr[0] == 127
        else:  # ::, ::1, ::ffff:0.0.0.0, ::ffff:127.x.y.z (a dual-stack socket takes IPv4 too)
            ok = addr == bytes(16) or addr == bytes(15) + b"\x01" or (
                addr[:12] == bytes(10) + b"\xff\xff" and (addr[12:] == bytes(4) or addr[12] == 127))
        if ok:
            out.setdefault(port, set()).add(inode)
    return {port: frozenset(inodes) for port, inodes in out.items()}


def _diag(family: int) -> list[tuple]:
    """One SOCK_DIAG_BY_FAMILY dump of TCP sockets in state LISTEN (linux/inet_diag.h:
    inet_diag_req_v2 asks, inet_diag_msg answers: the inode at offset 68)."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 4)  # NETLINK_SOCK_DIAG
    try:
        s.settimeout(1.0)
        req = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 1 << 10) + bytes(48)  # states: TCP_LISTEN
        s.sendto(struct.pack("=IHHII", 16 + len(req), 20, 0x301, 1, 0) + req, (0, 0))  # REQUEST | DUMP
        out: list[tuple] = []
        for _ in range(10_000):
            data = s.recv(65536)
            off = 0
            while off + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, off)
                if kind == 3:  # NLMSG_DONE
                    return out
                if kind == 2 or length < 16:  # NLMSG_ERROR
                    raise OSError("sock_diag refused")
                port = struct.unpack_from(">H", data, off + 20)[0]
                addr = bytes(data[off + 24:off + 40])
                inode = struct.unpack_from("=I", data, off + 16 + 68)[0]
                out.append((family, port, addr, inode))
                off += (length + 3) & ~3
        raise OSError("sock_diag answer without an end")
    finally:
        s.close()


@dataclass
class Listener:
    pid: int
    port: int
    host: str = "127.0.0.1"


class ProcessTable:
    """psutil-backed process table. Keeps psutil.Process objects between calls so CPU %
    is measured over the refresh interval (psutil needs two calls for a CPU share)."""

    # what the instance collector asks of a process table (a simulated one answers otherwise):
    # whether to probe this machine's default engine ports, the ``source`` of a server found by
    # discovery, and a name for the server listening as a pid (None: named after kind and port)
    probe_default_ports = True
    discovered_source = "discovered"

    def server_name(self, pid: int) -> str | None:
        return None

    # what a process rarely changes (name, command line, user, parent, CPU affinity) is read again
    # at most this often, through psutil; CPU % and RSS on every call, from one read of
    # /proc/<pid>/stat (``_stat``). NVML's process list asks for every GPU process on every tick:
    # the full read cost ~0.6 ms a process (psutil, measured on the benchmark box), the changing
    # part ~0.2 ms through psutil (three reads of /proc and its checks), ~0.02 ms from the one
    # read. A command line can change (setproctitle), hence a refresh rather than never.
    STATIC_S = 10.0

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self._procs: dict[int, psutil.Process] = {}
        self._static: dict[int, tuple[float, int, ProcInfo]] = {}  # pid -> (when, start ticks, fields)
        # pid -> (start ticks, CPU ticks, monotonic time, the CPU % measured up to then)
        self._cpu: dict[int, tuple[int, int, float, float]] = {}
        self._environ: dict[int, tuple[int, dict[str, str]]] = {}  # pid -> (start ticks, environment)
        self._lock = threading.Lock()
        self._last_prune = time.monotonic()
        self._listening: tuple[frozenset, list[Listener]] | None = None  # (sock_diag's set, listeners)
        self._sockets: frozenset | None = None  # the last listening_sockets() answer
        # the last pass over every process (see _scan): the pids it saw, and per pid
        # (start time, parent, name, command line)
        self._scan_pids: frozenset | None = None
        self._scanned: dict[int, tuple[float, int | None, str, list[str]]] = {}
        self._kids_of: tuple[dict, dict[int, list[int]]] | None = None  # (the pass, parent -> children)

    PRUNE_EVERY_S = 60.0
    MIN_CPU_S = 0.5  # the shortest stretch a CPU % is measured over (see ``info``)

    def _prune(self) -> None:
        """Drop processes that exited: a pid NVML no longer lists is never asked for again, so
        without this the caches would grow with every process the box ever ran."""
        now = time.monotonic()
        if now - self._last_prune < self.PRUNE_EVERY_S:
            return
        self._last_prune = now
        for pid, p in list(self._procs.items()):
            if not p.is_running():
                del self._procs[pid]
        for pid in [pid for pid in {*self._cpu, *self._environ} if _stat(pid) is None]:
            self._forget(pid)

    def _forget(self, pid: int) -> None:
        self._procs.pop(pid, None)
        self._static.pop(pid, None)
        self._cpu.pop(pid, None)
        self._environ.pop(pid, None)

    def _proc(self, pid: int) -> psutil.Process | None:
        with self._lock:
            self._prune()
            p = self._procs.get(pid)
            if p is not None and p.is_running():
                return p
            try:
                p = psutil.Process(pid)
            except (psutil.Error, ValueError):
                self._forget(pid)
                return None
            self._procs[pid] = p
            return p

    def info(self, pid: int) -> ProcInfo | None:
        stat = _stat(pid)
        if stat is None:  # ended, or not ours to see
            with self._lock:
                self._forget(pid)
            return None
        start, ticks, pages = stat
        now, at = self.clock(), time.monotonic()
        with self._lock:
            self._prune()
            last = self._cpu.get(pid)
            # CPU % over the time since the last call, as psutil's cpu_percent(None) counts it (0.0
            # the first time); another start time is another process under a reused pid. A call
            # soon after the last one (discovery asks between two ticks) gets the last figure: CPU
            # time is counted in 1/CLK_TCK steps, and over a few ms one step reads as 100 % or more
            if last is None or last[0] != start:
                pct = 0.0
                self._cpu[pid] = (start, ticks, at, pct)
            elif at - last[2] < self.MIN_CPU_S:
                pct = last[3]
            else:
                pct = 100.0 * (ticks - last[1]) / _CLK_TCK / (at - last[2])
                self._cpu[pid] = (start, ticks, at, pct)
            kept = self._static.get(pid)
        out = ProcInfo(pid=pid, rss_bytes=pages * _PAGE_BYTES, cpu_pct=pct)
        if kept is not None and kept[1] == start and now - kept[0] < self.STATIC_S:
            st = kept[2]
            out.name, out.ppid, out.cmdline, out.user = st.name, st.ppid, list(st.cmdline), st.user
            out.cpu_affinity = None if st.cpu_affinity is None else list(st.cpu_affinity)
            return out
        p = self._proc(pid)
        if p is None:
            return None
        try:
            with p.oneshot():
                out.name = p.name()
                out.ppid = p.ppid()
                try:
                    out.cmdline = p.cmdline()
                except psutil.Error:
                    pass
                try:
                    out.user = p.username()
                except (psutil.Error, KeyError):
                    pass
                try:
                    out.cpu_affinity = p.cpu_affinity()
                except (psutil.Error, AttributeError):
                    pass
        except psutil.NoSuchProcess:
            return None
        except psutil.Error:
            pass
        with self._lock:
            self._static[pid] = (now, start, ProcInfo(pid=pid, name=out.name, ppid=out.ppid, cmdline=list(out.cmdline),
                                                      user=out.user, cpu_affinity=out.cpu_affinity))
        return out

    def environ(self, pid: int) -> dict[str, str] | None:
        """The environment the process was started with: ``/proc/<pid>/environ`` is the block
        given at exec, so it is read once per process (discovery asks for each server's at every
        scan), except while the process is young (``YOUNG_S``): a launcher that execs the server
        keeps its pid and start time but gets the server's environment."""
        stat = _stat(pid)
        if stat is None:
            return None
        with self._lock:
            kept = self._environ.get(pid)
        if kept is not None and kept[0] == stat[0]:
            return dict(kept[1])
        p = self._proc(pid)
        if p is None:
            return None
        try:
            env = p.environ()
            young = time.time() - p.create_time() < self.YOUNG_S
        except psutil.Error:
            return None
        if not young:
            with self._lock:
                self._environ[pid] = (stat[0], dict(env))
        return env

    def children(self, pid: int) -> list[int]:
        """Every descendant of ``pid``, from the parents the last pass over the processes saw
        (``_scan``: looked at again when the set of pids changed)."""
        if self._proc(pid) is None:
            return []
        kids = self._kids()
        out, seen, todo = [], {pid}, list(kids.get(pid, ()))
        while todo and len(out) < 100_000:
            c = todo.pop()
            if c in seen:
                continue
            seen.add(c)
            out.append(c)
            todo.extend(kids.get(c, ()))
        return out

    def _kids(self) -> dict[int, list[int]]:
        """parent -> its children, from the last pass; made once per pass (discovery asks for
        the descendants of each server in turn)."""
        scanned = self._scan()
        if self._kids_of is None or self._kids_of[0] is not scanned:
            kids: dict[int, list[int]] = {}
            for child, rec in scanned.items():
                if rec[1]:
                    kids.setdefault(rec[1], []).append(child)
            self._kids_of = (scanned, kids)
        return self._kids_of[1]

    def listeners(self) -> list[Listener]:
        """Listening TCP sockets with their owning pid (pids we may not see are skipped). Which
        sockets listen is asked of the kernel through sock_diag (~0.2 ms); the owners are looked
        up (psutil: every process's open files, ~20 ms on the benchmark box) only when that set
        changed since the last call."""
        sig = self._sockets = listening_sockets()
        if sig is not None and self._listening is not None and sig == self._listening[0]:
            return list(self._listening[1])
        out = []
        try:
            conns = psutil.net_connections(kind="tcp")
        except (psutil.Error, PermissionError):
            return out
        for c in conns:
            if c.status != psutil.CONN_LISTEN or not c.laddr or c.pid is None:
                continue
            host = c.laddr.ip
            if host in ("0.0.0.0", "::", ""):
                host = "127.0.0.1"
            out.append(Listener(pid=c.pid, port=c.laddr.port, host=host))
        if sig is not None:
            self._listening = (sig, list(out))
        return out

    def loopback_ports(self) -> dict[int, frozenset] | None:
        """Ports that listen for 127.0.0.1 as of the last ``listeners()`` call, each with its
        sockets' inodes (``loopback_ports``); None where the kernel could not be asked."""
        return loopback_ports(self._sockets) if self._sockets is not None else None

    def processes(self) -> list[tuple[int, str, list[str], float]]:
        """(pid, name, command line, start time) of every process we may see. Used to tell a
        server that is still loading (process up, port not listening yet) from one that is down."""
        return [(pid, name, list(argv), started) for pid, (started, _ppid, name, argv) in self._scan().items()]

    # a process younger than this has its name and command line read again at each pass: a
    # launcher that execs the server (``exec vllm serve ...`` at the end of a script, an init in
    # a container) keeps its pid, and does so within seconds of starting
    YOUNG_S = 60.0

    def _scan(self) -> dict[int, tuple[float, int | None, str, list[str]]]:
        """Every process as (start time, parent, name, command line), looked at again only when
        the set of pids changed, and then read only for the processes that need it: new ones,
        young ones (see ``YOUNG_S``) and those whose parent ended (they were given another).
        Reading every process through psutil costs ~0.25 ms each on the benchmark VM: with 664
        processes, 170-190 ms at every discovery scan on a box where some process always starts
        or ends, 2 % of a core at a 10 s scan; this pass costs what changed (measured in the
        README's third round). A pid reused between two passes (ten seconds apart; Linux hands
        pids out in order up to ``pid_max``) keeps the name it had until it ends."""
        pids = frozenset(psutil.pids())
        if self._scan_pids == pids:
            return self._scanned
        now = time.time()
        old, out = self._scanned, {}
        for pid in pids:
            kept = old.get(pid)
            if kept is not None and now - kept[0] > self.YOUNG_S and (not kept[1] or kept[1] in pids):
                out[pid] = kept
                continue
            try:
                p = psutil.Process(pid)
                with p.oneshot():
                    started, ppid = p.create_time(), p.ppid()
                    try:
                        name, argv = p.name() or "", p.cmdline() or []
                    except psutil.AccessDenied:
                        name, argv = "", []
            except psutil.Error:  # ended meanwhile, or not ours to read
                continue
            out[pid] = (started, ppid, name, argv)
        self._scan_pids, self._scanned = pids, out
        return out

    def forget_missing(self, alive: set[int]) -> None:
        with self._lock:
            for pid in {*self._procs, *self._cpu, *self._environ}:
                if pid not in alive:
                    self._forget(pid)

    @staticmethod
    def own_pid() -> int:
        return os.getpid()
