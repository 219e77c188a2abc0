"""Planning capacity: the options of ``chunkcast plan`` (and of ``GET /api/v1/plan``), the
capacity files benchmarks write, and the plan made from both. Every figure the model gets
names its source: an option, an option's default, the ladder, or a capacity file."""

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chunkcast.domain import plan as model
from chunkcast.domain.errors import InvalidInput
from chunkcast.domain.ladder import DEFAULT_RUNGS, choose_ladder
from chunkcast.domain.plan import Given

FORMAT = "chunkcast-capacity/1"
RESULTS_DIR = Path("bench/results")  # in the checkout, where the benchmarks write
CAPACITY_GLOB = "capacity-*.json"
# Which benchmark measures each capacity (and writes it into a capacity file).
MEASURED_BY = {model.API_VIEWERS: "bench/fanout.py", model.EDGE_REQUESTS: "bench/edge.py",
               model.EDGE_GBPS: "bench/edge.py", model.BUS_EVENTS: "bench/bus.py",
               model.REALTIME: "bench/transcode.py"}
MAX_VALUE = 1e12  # finite and bounded: nothing planned comes near it


@dataclass(frozen=True)
class Option:
    """One input of the plan, as ``--flag`` and as a query parameter ``name``."""

    name: str
    label: str
    unit: str
    help: str
    default: float | None = None  # None: required, or a capacity measured by a benchmark
    low: float = 0.0  # exclusive unless ``zero``
    high: float = MAX_VALUE
    zero: bool = False  # 0 is allowed
    per_rung: bool = False  # "240p=0.3,360p=0.7"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option("viewers", "Viewers at once", "viewers", "concurrent viewers at the peak",
           high=1e11),
    Option("ladder_mix", "Ladder mix", "share", "share of the viewers on each rung, adding "
           "up to 1 (240p=0.3,360p=0.3,...); its rungs are the ladder", per_rung=True,
           zero=True, high=1.0),
    Option("chunk_seconds", "Chunk length (s)", "s", "length of a live chunk (and segment)",
           1.0, high=10.0),
    Option("dvr_hours", "DVR hours", "h", "hours of each stream kept for DVR and replay",
           4.0, zero=True, high=1e4),
    Option("streams", "Streams", "streams", "live streams at once, each with the whole "
           "ladder", 1.0, high=1e6),
    Option("hls_share", "HLS share", "share", "share of the viewers on plain HLS players (a "
           "playlist per segment, no WebSocket)", 0.0, zero=True, high=1.0),
    Option("live_hours_per_day", "Live hours per day", "h/day", "hours each stream is live "
           "per day (default: --dvr-hours)", zero=True, high=24.0),
    Option("upload_backlog_hours", "Upload backlog (h)", "h", "hours of uploaded video "
           "waiting to be transcoded", 0.0, zero=True, high=1e7),
    Option("backlog_within_hours", "Backlog done within (h)", "h", "hours in which the "
           "upload backlog must be done", 1.0, high=1e4),
    Option("utilisation", "Utilisation", "share", "share of a measured capacity each machine "
           "is planned to use", 0.7, high=1.0),
    Option("edge_cores", "Edge node cores", "cores", "cores of an edge node", 16.0, high=1e4),
    Option("edge_nic_gbps", "Edge node NIC (Gbps)", "Gbps", "network interface of an edge "
           "node", 100.0, high=1e5),
    Option("api_processes_per_host", "API processes per host", "processes", "API processes "
           "on one host", 8.0, high=1e4),
    Option("rendition_groups", "Rendition groups", "groups", "rendition groups "
           "(CHUNKCAST_LADDER_GROUPS)", 1.0, high=100.0),
    Option("bitrate", "Bitrates (kbps)", "kbps", "video + audio kbps of a rung (default: the "
           "ladder's)", per_rung=True, high=1e6),
    Option(model.API_VIEWERS, "Viewers per API process", "viewers", "WebSocket viewers one "
           "API process holds at the p99 target"),
    Option(model.REALTIME, "Transcode speed per core", "x realtime", "seconds of each rung "
           "one core encodes per second (240p=3.4,...)", per_rung=True, high=1e6),
    Option(model.EDGE_REQUESTS, "Edge requests/s per core", "req/s", "segment requests one "
           "edge core serves per second"),
    Option(model.EDGE_GBPS, "Edge Gbps per core", "Gbps", "Gbps one edge core serves"),
    Option(model.BUS_EVENTS, "Bus events/s per node", "events/s", "event deliveries one bus "
           "node makes per second"),
)
BY_NAME = {o.name: o for o in OPTIONS}


def _number(option: Option, text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidInput(f"{what}: not a number: {text[:40]!r}") from None
    low_ok = value >= option.low if option.zero else value > option.low
    if not math.isfinite(value) or not low_ok or value > option.high:
        bound = "≥" if option.zero else ">"
        raise InvalidInput(f"{what} must be {bound} {option.low:g} and ≤ {option.high:g}")
    return value


def parse(option: Option, text: str) -> float | dict[str, float]:
    """One option's text as its bounded value (a ``rung=value`` list for per-rung ones)."""
    if not option.per_rung:
        return _number(option, text.strip(), option.flag)
    values: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        rung, sep, number = item.partition("=")
        rung = rung.strip()
        if not sep or not rung or len(rung) > 16 or not rung.isalnum():
            raise InvalidInput(f"{option.flag}: expected rung=value, got {item[:40]!r}")
        if rung in values:
            raise InvalidInput(f"{option.flag}: {rung} is given twice")
        values[rung] = _number(option, number.strip(), f"{option.flag} {rung}")
    if not values or len(values) > 16:
        raise InvalidInput(f"{option.flag}: expected 1 to 16 rung=value pairs")
    return values


def load_capacity(results: Path) -> dict[str, Given]:
    """The newest measurement of each capacity in ``results/capacity-*.json``, each naming
    its file."""
    files = []
    for path in sorted(results.glob(CAPACITY_GLOB)) if results.is_dir() else []:
        try:
            body = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"unreadable capacity file {path}: {exc}") from None
        if isinstance(body, dict) and body.get("format") == FORMAT:
            files.append((str(body.get("measured_at", "")), path, body))
    found: dict[str, Given] = {}
    for _, path, body in sorted(files, key=lambda f: (f[0], f[1].name)):
        for name, entry in dict(body.get("capacities", {})).items():
            try:
                value, unit, how = float(entry["value"]), str(entry["unit"]), str(entry["how"])
            except (KeyError, TypeError, ValueError):
                raise InvalidInput(f"{path}: capacity {name!r} needs value, unit and how"
                                   ) from None
            if not math.isfinite(value) or value <= 0:
                raise InvalidInput(f"{path}: capacity {name!r} is not a positive number")
            found[name] = Given(value, unit, f"{path} ({how})")
    return found


def _bitrates(rungs: list[str], given: Mapping[str, float]) -> dict[str, Given]:
    ladder = {r.name: r for r in choose_ladder(1920, 1080, 30.0)}
    out = {}
    for rung in rungs:
        if rung in given:
            out[rung] = Given(given[rung], "kbps", f"option --bitrate {rung}")
        elif rung in ladder:
            r = ladder[rung]
            out[rung] = Given(r.average_bandwidth(has_audio=True) / 1000, "kbps",
                              f"ladder: {r.video_kbps}k video + {r.audio_kbps}k audio "
                              "(domain/ladder.py)")
    return out


class Inputs:
    """The plan's inputs: options given (name → text), then defaults and capacity files."""

    def __init__(self, given: Mapping[str, str], measured: Mapping[str, Given]) -> None:
        unknown = set(given) - set(BY_NAME)
        if unknown:
            raise InvalidInput(f"unknown option(s): {', '.join(sorted(unknown))}")
        self._values = {name: parse(BY_NAME[name], text) for name, text in given.items()}
        self._measured = measured

    def scalar(self, name: str, default_source: str | None = None) -> Given:
        option = BY_NAME[name]
        value = self._values.get(name)
        if isinstance(value, float):
            return Given(value, option.unit, f"option {option.flag}")
        if option.default is not None:
            return Given(option.default, option.unit, f"default of {option.flag}")
        if name in self._measured:
            return self._measured[name]
        raise InvalidInput(f"{option.flag} is required")

    def rungs(self, name: str) -> dict[str, float]:
        value = self._values.get(name, {})
        return value if isinstance(value, dict) else {}

    def missing(self, rungs: list[str]) -> list[str]:
        """The capacities neither given nor measured, each with what measures it."""
        wanted = [model.API_VIEWERS, model.EDGE_REQUESTS, model.EDGE_GBPS, model.BUS_EVENTS]
        out = [f"{BY_NAME[n].flag} (measured by {MEASURED_BY[n]})" for n in wanted
               if n not in self._values and n not in self._measured]
        given = self.rungs(model.REALTIME)
        lacking = [r for r in rungs
                   if r not in given and model.realtime_name(r) not in self._measured]
        if lacking:
            out.append(f"{BY_NAME[model.REALTIME].flag} for {', '.join(lacking)} "
                       f"(measured by {MEASURED_BY[model.REALTIME]})")
        return out

    def build(self) -> tuple[model.Event, model.Fleet, model.Capacity]:
        if "viewers" not in self._values or "ladder_mix" not in self._values:
            raise InvalidInput("--viewers and --ladder-mix are required")
        mix = {r: Given(s, "share", "option --ladder-mix")
               for r, s in self.rungs("ladder_mix").items()}
        rungs = list(mix)
        bitrates = _bitrates(rungs, self.rungs("bitrate"))
        unknown = [r for r in rungs if r not in bitrates]
        if unknown:
            raise InvalidInput(f"no bitrate for rung {', '.join(unknown)}: the ladder has "
                               f"{', '.join(r.name for r in DEFAULT_RUNGS)}; give --bitrate "
                               f"{unknown[0]}=KBPS")
        missing = self.missing(rungs)
        if missing:
            raise InvalidInput("no measured capacity on this machine for: " + "; ".join(
                missing) + ". Run those benchmarks here (they write bench/results/"
                "capacity-*.json) or give the options.")
        dvr = self.scalar("dvr_hours")
        live_hours = (self.scalar("live_hours_per_day") if "live_hours_per_day" in self._values
                      else Given(dvr.value, "h/day", "default: --dvr-hours"))
        event = model.Event(
            viewers=self.scalar("viewers"), mix=mix,
            bitrate_kbps=bitrates,
            chunk_seconds=self.scalar("chunk_seconds"), dvr_hours=dvr,
            streams=self.scalar("streams"), hls_share=self.scalar("hls_share"),
            live_hours_per_day=live_hours,
            upload_backlog_hours=self.scalar("upload_backlog_hours"),
            backlog_within_hours=self.scalar("backlog_within_hours"))
        fleet = model.Fleet(
            utilisation=self.scalar("utilisation"), edge_cores=self.scalar("edge_cores"),
            edge_nic_gbps=self.scalar("edge_nic_gbps"),
            api_processes_per_host=self.scalar("api_processes_per_host"),
            rendition_groups=self.scalar("rendition_groups"))
        given = self.rungs(model.REALTIME)
        realtime = {r: (Given(given[r], "x realtime", f"option --transcode-realtime-per-core "
                              f"{r}") if r in given
                        else self._measured[model.realtime_name(r)]) for r in rungs}
        capacity = model.Capacity(
            api_viewers_per_process=self.scalar(model.API_VIEWERS),
            realtime_per_core=realtime,
            edge_requests_per_s_per_core=self.scalar(model.EDGE_REQUESTS),
            edge_gbps_per_core=self.scalar(model.EDGE_GBPS),
            bus_events_per_s=self.scalar(model.BUS_EVENTS))
        return event, fleet, capacity


def make_plan(given: Mapping[str, str], results: Path = RESULTS_DIR
              ) -> tuple[model.Plan, list[dict[str, float]]]:
    """The plan for the options ``given`` (name → text) and the capacities measured in
    ``results``, and how its machines grow with the audience."""
    event, fleet, capacity = Inputs(given, load_capacity(results)).build()
    return model.plan(event, fleet, capacity), model.growth(event, fleet, capacity)


def to_json(plan: model.Plan) -> dict[str, Any]:
    """Each line by its key: value, unit, formula, parts and every input with its source."""
    return {line.key: {
        "label": line.label, "value": line.value, "unit": line.unit, "formula": line.formula,
        "parts": dict(line.parts),
        "inputs": {name: {"value": g.value, "unit": g.unit, "source": g.source}
                   for name, g in line.inputs.items()},
    } for line in plan.lines}
