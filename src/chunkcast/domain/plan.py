"""The back-of-envelope of a live event as a model: how many watch at once, the bandwidth that
takes, the storage it leaves, and so many machines for each purpose, from the platform's
measured capacity. Pure: every figure in is a :class:`Given` that names where it came from
(an option, a benchmark result file, the ladder), every figure out a :class:`Line` that
names what it was computed from."""

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from chunkcast.domain.errors import InvalidInput

# The capacities the model needs, by the names benchmark result files give them
# (``bench/capacity.py`` writes them; ``docs/architecture.md`` describes the format).
API_VIEWERS = "api_viewers_per_process"
EDGE_REQUESTS = "edge_requests_per_s_per_core"
EDGE_GBPS = "edge_gbps_per_core"
BUS_EVENTS = "bus_events_per_s"
REALTIME = "transcode_realtime_per_core"  # one per rung: "transcode_realtime_per_core.720p"


def realtime_name(rung: str) -> str:
    return f"{REALTIME}.{rung}"


BITS_PER_TB = 8e12
SECONDS_PER_HOUR = 3600.0
# Writes of the catalogue per live chunk besides one segment row per rendition: the chunk
# row, its outbox row written and then deleted (services/streams.py, services/outbox.py).
CHUNK_WRITES = 3


@dataclass(frozen=True)
class Given:
    """A figure the plan starts from, and where it came from."""

    value: float
    unit: str
    source: str


@dataclass(frozen=True)
class Event:
    """What is planned for: the audience and the streams it watches."""

    viewers: Given
    mix: Mapping[str, Given]  # rung -> share of the viewers watching it (sums to 1)
    bitrate_kbps: Mapping[str, Given]  # rung -> video + audio kbps
    chunk_seconds: Given
    dvr_hours: Given
    streams: Given
    hls_share: Given  # viewers on plain HLS players (playlist polls, no WebSocket)
    live_hours_per_day: Given
    upload_backlog_hours: Given
    backlog_within_hours: Given


@dataclass(frozen=True)
class Fleet:
    """How the machines are shaped and how hard they are run."""

    utilisation: Given  # the share of a measured capacity a machine is planned to use
    edge_cores: Given
    edge_nic_gbps: Given
    api_processes_per_host: Given
    rendition_groups: Given


@dataclass(frozen=True)
class Capacity:
    """What one process or core of this platform measured it could hold."""

    api_viewers_per_process: Given
    realtime_per_core: Mapping[str, Given]  # rung -> seconds encoded per CPU second
    edge_requests_per_s_per_core: Given
    edge_gbps_per_core: Given
    bus_events_per_s: Given


@dataclass(frozen=True)
class Line:
    """One figure of the plan: its value, how it was computed and from which inputs."""

    key: str
    label: str
    value: float
    unit: str
    formula: str
    inputs: Mapping[str, Given]
    parts: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    lines: tuple[Line, ...]

    def __getitem__(self, key: str) -> Line:
        for line in self.lines:
            if line.key == key:
                return line
        raise KeyError(key)


def _derived(line: Line) -> Given:
    return Given(line.value, line.unit, f"computed: {line.key}")


def _per_rung(name: str, values: Mapping[str, Given], rungs: list[str]) -> dict[str, Given]:
    return {f"{name} {r}": values[r] for r in rungs}


def check(event: Event, capacity: Capacity) -> list[str]:
    """The ladder's rungs, after checking that the mix adds up and that every rung has a
    bitrate and a measured encoding speed."""
    rungs = list(event.mix)
    if not rungs:
        raise InvalidInput("the ladder mix names no rung")
    total = math.fsum(g.value for g in event.mix.values())
    if abs(total - 1.0) > 1e-6:
        raise InvalidInput(f"the ladder mix's shares add up to {total:g}, not 1")
    for rung in rungs:
        if rung not in event.bitrate_kbps:
            raise InvalidInput(f"no bitrate for rung {rung}")
        if rung not in capacity.realtime_per_core:
            raise InvalidInput(f"no transcode speed for rung {rung} ({realtime_name(rung)})")
    if not 0 <= event.hls_share.value <= 1:
        raise InvalidInput("the HLS share must be within [0, 1]")
    return rungs


def plan(event: Event, fleet: Fleet, capacity: Capacity) -> Plan:
    """Every figure of the event's plan (see the README's worked example, line by line)."""
    rungs = check(event, capacity)
    v, c, s = event.viewers, event.chunk_seconds, event.streams
    u, h = fleet.utilisation, event.hls_share
    renditions = Given(len(rungs), "renditions", "the ladder mix")
    lines: list[Line] = []

    per_rung = {r: v.value * event.mix[r].value * event.bitrate_kbps[r].value / 1e6
                for r in rungs}
    egress = Line("egress_gbps", "peak egress", math.fsum(per_rung.values()), "Gbps",
                  "sum over rungs of viewers * share * bitrate",
                  {"viewers": v, **_per_rung("share", event.mix, rungs),
                   **_per_rung("bitrate", event.bitrate_kbps, rungs)}, per_rung)
    requests = Line("edge_requests_per_s", "edge requests", v.value * (1 + h.value) / c.value,
                    "req/s", "viewers * (1 segment + HLS share * 1 playlist) / chunk seconds",
                    {"viewers": v, "HLS share": h, "chunk seconds": c})
    node_gbps = min(capacity.edge_gbps_per_core.value * fleet.edge_cores.value,
                    fleet.edge_nic_gbps.value)
    node_requests = capacity.edge_requests_per_s_per_core.value * fleet.edge_cores.value
    edges = math.ceil(max(egress.value / (node_gbps * u.value),
                          requests.value / (node_requests * u.value)))
    edge_nodes = Line(
        "edge_nodes", "edge nodes", edges, "nodes",
        "ceil(max(egress / (min(Gbps per core * cores, NIC) * utilisation), "
        "requests / (requests per core * cores * utilisation)))",
        {"egress": _derived(egress), "requests": _derived(requests),
         "Gbps per core": capacity.edge_gbps_per_core,
         "requests per core": capacity.edge_requests_per_s_per_core,
         "cores": fleet.edge_cores, "NIC": fleet.edge_nic_gbps, "utilisation": u},
        {"by_bandwidth": egress.value / (node_gbps * u.value),
         "by_requests": requests.value / (node_requests * u.value)})
    playlists = 1.0 if h.value > 0 else 0.0
    origin = Line("origin_requests_per_s", "origin requests",
                  edges * s.value * len(rungs) * (1 + playlists) / c.value, "req/s",
                  "edge nodes * streams * renditions * (1 segment + 1 playlist if HLS "
                  "share > 0) / chunk seconds (one fetch per object per edge: "
                  "proxy_cache_lock)",
                  {"edge nodes": _derived(edge_nodes), "streams": s,
                   "renditions": renditions, "HLS share": h, "chunk seconds": c})
    lines += [egress, requests, edge_nodes, origin]

    processes = math.ceil(v.value * (1 - h.value)
                          / (capacity.api_viewers_per_process.value * u.value))
    api = Line("api_processes", "WebSocket API processes", processes, "processes",
               "ceil(viewers * (1 - HLS share) / (viewers per process * utilisation))",
               {"viewers": v, "HLS share": h,
                "viewers per process": capacity.api_viewers_per_process, "utilisation": u})
    hosts = Line("api_hosts", "API hosts",
                 math.ceil(processes / fleet.api_processes_per_host.value), "hosts",
                 "ceil(API processes / processes per host)",
                 {"API processes": _derived(api),
                  "processes per host": fleet.api_processes_per_host})
    lines += [api, hosts]

    cost = math.fsum(1 / capacity.realtime_per_core[r].value for r in rungs)
    live = s.value * cost / u.value
    upload = (event.upload_backlog_hours.value / event.backlog_within_hours.value
              * cost / u.value)
    lines.append(Line(
        "transcode_cores", "transcode cores", math.ceil(live) + math.ceil(upload), "cores",
        "ceil(streams * S / utilisation) (live) + ceil(backlog hours / within hours * S / "
        "utilisation) (uploads), S = sum over rungs of 1 / realtime per core",
        {"streams": s, **_per_rung("realtime per core", capacity.realtime_per_core, rungs),
         "backlog hours": event.upload_backlog_hours,
         "within hours": event.backlog_within_hours, "utilisation": u},
        {"live": live, "upload": upload}))

    groups = fleet.rendition_groups
    published = s.value * (1 + len(rungs)) / c.value
    delivered = s.value * (groups.value + len(rungs) * processes) / c.value
    bus = Line("bus_events_per_s", "bus deliveries", delivered, "events/s",
               "streams * (rendition groups + renditions * API processes) / chunk seconds "
               "(each chunk event to every group, each segment event to every API process)",
               {"streams": s, "rendition groups": groups, "renditions": renditions,
                "API processes": _derived(api), "chunk seconds": c},
               {"published": published})
    bus_nodes = Line("bus_nodes", "bus nodes",
                     math.ceil(delivered / (capacity.bus_events_per_s.value * u.value)),
                     "nodes", "ceil(bus deliveries / (events per s per node * utilisation))",
                     {"bus deliveries": _derived(bus),
                      "events per s per node": capacity.bus_events_per_s, "utilisation": u})
    writes = Line("catalogue_writes_per_s", "catalogue writes",
                  s.value * (CHUNK_WRITES + len(rungs) + groups.value) / c.value, "rows/s",
                  f"streams * ({CHUNK_WRITES} per chunk + renditions + rendition groups) / "
                  "chunk seconds",
                  {"streams": s, "renditions": renditions, "rendition groups": groups,
                   "chunk seconds": c})
    lines += [bus, bus_nodes, writes]

    ladder_kbps = math.fsum(event.bitrate_kbps[r].value for r in rungs)
    tb_per_hour = ladder_kbps * 1000 * SECONDS_PER_HOUR / BITS_PER_TB
    dvr = s.value * event.dvr_hours.value * tb_per_hour
    backlog = event.upload_backlog_hours.value * tb_per_hour
    bitrates = _per_rung("bitrate", event.bitrate_kbps, rungs)
    lines.append(Line(
        "storage_tb", "storage for DVR and replay", dvr + backlog, "TB",
        "(streams * DVR hours + backlog hours) * sum over rungs of bitrate * 3600 s / 8 (every "
        "rendition is kept: the DVR is the replay)",
        {"streams": s, "DVR hours": event.dvr_hours,
         "backlog hours": event.upload_backlog_hours, **bitrates},
        {"dvr": dvr, "upload": backlog}))
    lines.append(Line(
        "storage_growth_tb_per_day", "storage growth", s.value *
        event.live_hours_per_day.value * tb_per_hour, "TB/day",
        "streams * live hours per day * sum over rungs of bitrate * 3600 s / 8",
        {"streams": s, "live hours per day": event.live_hours_per_day, **bitrates}))
    return Plan(tuple(lines))


def growth(event: Event, fleet: Fleet, capacity: Capacity, points: int = 10
           ) -> list[dict[str, float]]:
    """Machines as the audience grows to the event's: ``points`` evenly spaced viewer
    counts, each with its edge nodes, API processes and API hosts."""
    out = []
    for i in range(1, points + 1):
        viewers = event.viewers.value * i / points
        scaled = replace(event, viewers=Given(viewers, "viewers", event.viewers.source))
        at = plan(scaled, fleet, capacity)
        out.append({"viewers": viewers, "edge_nodes": at["edge_nodes"].value,
                    "api_processes": at["api_processes"].value,
                    "api_hosts": at["api_hosts"].value})
    return out
