"""Fleets: export a box to Prometheus (``gpuwatch serve``) and watch many boxes through a
Prometheus server (``gpuwatch --prometheus URL``).

- ``names``    the exported metric names, as tables shared by the exporter and the reader
- ``exporter`` ``gpuwatch serve``: a Monitor on its own thread, ``/metrics`` and ``/healthz``
- ``promql``   a small client of Prometheus's HTTP API (instant queries, bounded time)
- ``mapping``  PromQL results -> one :class:`~gpuwatch.model.Snapshot` per host (tables: gpuwatch's
  own series, DCGM exporter series, inference-server series)
- ``source``   the fleet source: queries per refresh, an alert engine and history per host

Nothing here imports Textual (tests/test_layers.py).
"""
