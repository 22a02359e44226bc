"""``gpuwatch meter``: a transparent metering proxy for inference servers without token
counters of their own (Ollama). Clients talk to LISTEN, every request goes to UPSTREAM
unchanged and every response comes back unchanged, streamed as it arrives; from what passes,
the meter counts requests, tokens and latencies per route and model and exports them in
Prometheus text (names in :mod:`gpuwatch.meter.names`, documented in docs/METER.md).

gpuwatch finds a running meter by itself (``gpuwatch.collect.meters``) and shows its figures
on the instance whose URL is a route's upstream.

Modules: ``names`` (the public names, no HTTP stack), ``parse`` (reading bodies as they pass),
``metrics`` (prometheus_client series and the per-request tally), ``proxy`` (aiohttp server and
client). The subcommand's grammar is in :mod:`gpuwatch.cli`.
"""
