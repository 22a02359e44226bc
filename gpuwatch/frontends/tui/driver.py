"""Textual's Linux terminal driver with an input thread that sleeps until there is input.

Textual's ``LinuxDriver`` reads the terminal on a thread that wakes ten times a second
(``select(0.1)``) whether or not anything was typed: to see whether it was told to stop, and to
let an escape sequence's timeout run out (a lone Esc is told from the start of a sequence by
the time that follows it). Each wake-up costs the process CPU time however little it does, and
on a virtual machine far more than the Python it runs: on the bench VM, one afternoon, a process
with a thread looping on ``select(0.1)`` used 13 ms of CPU a second more than the same process
without it (``os.times``; 1.5 ms an hour earlier, by ``/proc/<tid>/schedstat``; a wake-up costs
a few microseconds on bare metal). Side by side on the bench box in
that afternoon, against the same dashboard on Textual's driver: 0.83-0.94x the CPU live (four
rounds, both orders), 0.33-0.38x paused (a paused dashboard is otherwise asleep between its polls
every 10 s: 9-10 wake-ups a second against 18-20).

Here the thread waits without a timeout while no escape sequence is pending, and is woken
through a pipe when it is told to stop (the stop event's ``set`` writes to it), so quitting,
suspending (ctrl+z) and the like are as prompt as before. While a sequence is pending it ticks
at Textual's 0.1 s, as before. What the thread does with input is Textual's own code path
(``XTermParser``, ``process_message``).
"""

from __future__ import annotations

import os
import selectors
import threading
from codecs import getincrementaldecoder

from textual._loop import loop_last
from textual._parser import ParseError
from textual._xterm_parser import XTermParser
from textual.drivers.linux_driver import LinuxDriver

# Textual's own tick while an escape sequence may still be completing (linux_driver.py,
# run_input_thread: ``selector.select(0.1)``)
PENDING_TICK_S = 0.1


class _WakingEvent(threading.Event):
    """An Event whose ``set`` also writes a byte to a pipe the input thread waits on."""

    def __init__(self, wake_fd: int) -> None:
        super().__init__()
        self._wake_fd = wake_fd

    def set(self) -> None:
        super().set()
        if self._wake_fd >= 0:
            try:
                os.write(self._wake_fd, b"\0")
            except OSError:  # the pipe is full: the thread is awake anyway
                pass


class QuietLinuxDriver(LinuxDriver):
    """``LinuxDriver`` whose input thread wakes for input, a pending escape sequence's
    timeout, or a stop; not ten times a second."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._wake_r = self._wake_w = -1
        self.exit_event = _WakingEvent(-1)

    def start_application_mode(self) -> None:
        # the pipe lives from here to ``close``, which Textual calls at the end and when the app
        # is suspended (ctrl+z: ``suspend_application_mode``); a resume starts here again
        if self._wake_r < 0:
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_r, False)
            os.set_blocking(self._wake_w, False)
            self.exit_event._wake_fd = self._wake_w
        super().start_application_mode()

    def run_input_thread(self) -> None:
        """Textual's ``run_input_thread`` (8.2), waiting on the wake pipe as well, and without
        a timeout while the parser has nothing pending."""
        selector = selectors.SelectSelector()
        selector.register(self.fileno, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)

        fileno = self.fileno
        wake_r = self._wake_r
        EVENT_READ = selectors.EVENT_READ

        parser = XTermParser(self._debug)
        feed = parser.feed
        tick = parser.tick
        decode = getincrementaldecoder("utf-8")().decode
        read = os.read

        def timeout() -> float | None:
            # the parser's own deadline for the sequence it is in (None: nothing pending). A
            # Textual without the attribute gets its usual tick.
            pending = getattr(parser, "_timeout_time", PENDING_TICK_S)
            return None if pending is None else PENDING_TICK_S

        def process_selector_events(selector_events, final: bool = False) -> None:
            events = []
            for key, mask in selector_events:
                if key.fd == wake_r:
                    try:
                        while read(wake_r, 64):
                            pass
                    except OSError:  # drained
                        pass
                else:
                    events.append((key, mask))
            for last, (_key, mask) in loop_last(events):
                if mask & EVENT_READ:
                    unicode_data = decode(read(fileno, 1024 * 4), final=final and last)
                    if not unicode_data:
                        # This can occur if the stdin is piped
                        break
                    for event in feed(unicode_data):
                        self.process_message(event)
            for event in tick():
                self.process_message(event)

        try:
            while not self.exit_event.is_set():
                process_selector_events(selector.select(timeout()))
            selector.unregister(self.fileno)
            process_selector_events(selector.select(PENDING_TICK_S), final=True)
        finally:
            selector.close()
            try:
                for event in feed(""):
                    pass
            except (EOFError, ParseError):
                pass

    def close(self) -> None:
        # after ``disable_input`` joined the thread; Textual may call ``disable_input`` again
        # later (``stop_application_mode``): no write then
        super().close()
        self.exit_event._wake_fd = -1
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1
