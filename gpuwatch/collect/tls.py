"""One TLS context for every HTTP client gpuwatch makes.

httpx builds a new ``ssl.create_default_context()`` for each client unless it is given one, and
that loads the system's CA store: ~15 ms of CPU per client (measured here). Discovery's port
probes and every server's own connection pool are separate clients, so a context per client cost
more than the polling itself (py-spy on the dashboard: 16 % of its CPU). The context is only read
after it is made, so one shared instance serves all clients and threads.
"""

from __future__ import annotations

import functools
import ssl


@functools.lru_cache(maxsize=1)
def tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()
