"""Capacity files: what a benchmark measured that ``chunkcast plan`` plans with.

Each benchmark that measures a capacity calls :func:`write_capacity` once, after its own
result file, which writes ``bench/results/capacity-{benchmark}-{stamp}.json``::

    {"format": "chunkcast-capacity/1", "benchmark": "fanout", "measured_at": "20261201T172923",
     "machine": "vm", "cpus": 2, "result": "fanout-20261201T172923.json",
     "capacities": {"api_viewers_per_process": {"value": 10000, "unit": "viewers",
                                                "how": "largest N with p99 <= 250 ms"}}}

``chunkcast plan`` takes the newest measurement of each capacity in ``bench/results/`` and
names its file as the source. The names (``chunkcast.domain.plan``): ``api_viewers_per_process``,
``edge_requests_per_s_per_core``, ``edge_gbps_per_core``, ``bus_events_per_s`` and
``transcode_realtime_per_core.{rung}``.
"""

import json
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

from chunkcast.domain import plan
from chunkcast.services.planning import FORMAT

RESULTS = Path(__file__).parent / "results"
NAMES = (plan.API_VIEWERS, plan.EDGE_REQUESTS, plan.EDGE_GBPS, plan.BUS_EVENTS)


@dataclass(frozen=True)
class Measured:
    """One capacity: its value, unit, and how it was measured (shown as its source)."""

    value: float
    unit: str
    how: str


def write_capacity(benchmark: str, capacities: dict[str, Measured],
                   result: Path | None = None) -> Path:
    """Write ``capacities`` measured by ``benchmark`` (whose full result file is ``result``)
    to ``bench/results/capacity-{benchmark}-{stamp}.json``."""
    for name, measured in capacities.items():
        if name not in NAMES and not name.startswith(plan.REALTIME + "."):
            raise ValueError(f"unknown capacity {name!r}")
        if not math.isfinite(measured.value) or measured.value <= 0:
            raise ValueError(f"capacity {name!r} must be a positive number")
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    path = RESULTS / f"capacity-{benchmark}-{stamp}.json"
    body = {"format": FORMAT, "benchmark": benchmark, "measured_at": stamp,
            "machine": platform.node(), "cpus": os.cpu_count(),
            "result": result.name if result is not None else None,
            "capacities": {name: {"value": m.value, "unit": m.unit, "how": m.how}
                           for name, m in capacities.items()}}
    path.write_text(json.dumps(body, indent=2) + "\n")
    return path
