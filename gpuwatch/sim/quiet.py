"""The simulated servers' HTTP server class: threaded, reusing its port, and quiet when a
poller drops its keep-alive connection."""

from __future__ import annotations

import sys
from http.server import ThreadingHTTPServer


class QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        # a poller that closes its keep-alive connection (gpuwatch exiting) is not an error;
        # socketserver would print a traceback on the terminal
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)
