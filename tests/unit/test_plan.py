"""The capacity plan: the README's worked example reproduced exactly, sources, capacity files."""

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from chunkcast.cli import main
from chunkcast.domain.errors import InvalidInput
from chunkcast.services.planning import load_capacity, make_plan, to_json

BENCH = Path(__file__).resolve().parents[2] / "bench"
MIX = "240p=0.3,360p=0.3,480p=0.2,720p=0.15,1080p=0.05"
# The README's worked example (the 2026 final): the capacities given as options, so the
# test does not depend on this machine's benchmark results.
FINAL = {
    "viewers": "65.2e6", "ladder_mix": MIX, "chunk_seconds": "1", "dvr_hours": "4",
    "streams": "1", "api_viewers_per_process": "10000",
    "transcode_realtime_per_core": "240p=3.4,360p=2.8,480p=2.2,720p=1.6,1080p=1",
    "edge_requests_per_s_per_core": "3700", "edge_gbps_per_core": "21",
    "bus_events_per_s": "100000",
}
ARGV = [f"--{name.replace('_', '-')}={value}" for name, value in FINAL.items()]


def test_the_worked_example_matches_the_hand_calculation(tmp_path: Path) -> None:
    plan, _ = make_plan(FINAL, tmp_path)
    # Egress: viewers x share x (video + audio kbps of the ladder), per rung, in Gbps.
    egress = plan["egress_gbps"]
    assert egress.parts == pytest.approx({"240p": 9_701.76, "360p": 18_151.68,
                                          "480p": 19_925.12, "720p": 28_635.84,
                                          "1080p": 16_717.28}, rel=1e-12)
    assert egress.value == pytest.approx(93_131.68, rel=1e-12)
    # Edge: 65.2M segment requests/s; a node is min(21 x 16, 100) = 100 Gbps and
    # 3,700 x 16 = 59,200 req/s, each used at 70 %.
    assert plan["edge_requests_per_s"].value == 65_200_000
    assert plan["edge_nodes"].parts["by_bandwidth"] == pytest.approx(93_131.68 / 70)
    assert plan["edge_nodes"].parts["by_requests"] == pytest.approx(65.2e6 / 41_440)
    assert plan["edge_nodes"].value == 1_574  # ceil(1,573.36): requests bind
    assert plan["origin_requests_per_s"].value == 1_574 * 5  # a fetch per segment per edge
    # WebSocket API: 65.2M / (10,000 x 0.7) = 9,314.3 -> 9,315 processes, 8 per host.
    assert plan["api_processes"].value == 9_315
    assert plan["api_hosts"].value == 1_165
    # Transcoding: (1/3.4 + 1/2.8 + 1/2.2 + 1/1.6 + 1/1) / 0.7 = 3.90 -> 4 cores.
    assert plan["transcode_cores"].parts["live"] == pytest.approx(
        (1 / 3.4 + 1 / 2.8 + 1 / 2.2 + 1 / 1.6 + 1 / 1) / 0.7, rel=1e-12)
    assert plan["transcode_cores"].value == 4
    # Bus: the chunk event to 1 group, each of 5 segment events to 9,315 API processes.
    assert plan["bus_events_per_s"].value == 1 + 5 * 9_315
    assert plan["bus_events_per_s"].parts["published"] == 6
    assert plan["bus_nodes"].value == 1
    assert plan["catalogue_writes_per_s"].value == 3 + 5 + 1
    # Storage: 11,008 kbps of ladder x 4 h = 19.8144 GB, kept for replay.
    assert plan["storage_tb"].value == pytest.approx(0.019_814_4, rel=1e-12)
    assert plan["storage_growth_tb_per_day"].value == pytest.approx(0.019_814_4, rel=1e-12)


def test_every_figure_names_its_inputs_and_every_input_its_source(tmp_path: Path) -> None:
    plan, _ = make_plan(FINAL, tmp_path)
    allowed = ("option --", "default of --", "default: --", "ladder: ", "the ladder mix",
               "computed: ")
    for line in plan.lines:
        assert line.inputs, line.key
        for name, given in line.inputs.items():
            assert given.source.startswith(allowed), (line.key, name, given.source)
    assert plan["api_processes"].inputs["viewers per process"].source == (
        "option --api-viewers-per-process")
    assert plan["egress_gbps"].inputs["bitrate 720p"].source.startswith(
        "ladder: 2800k video + 128k audio")


def test_without_capacities_it_says_which_are_missing_and_what_measures_them(
        tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as caught:
        make_plan({"viewers": "1e6", "ladder_mix": "240p=0.5,720p=0.5"}, tmp_path)
    message = caught.value.message
    for expected in ("--api-viewers-per-process (measured by bench/fanout.py)",
                     "--edge-requests-per-s-per-core (measured by bench/edge.py)",
                     "--edge-gbps-per-core (measured by bench/edge.py)",
                     "--bus-events-per-s (measured by bench/bus.py)",
                     "--transcode-realtime-per-core for 240p, 720p (measured by "
                     "bench/transcode.py)"):
        assert expected in message


def _bench_capacity(results: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_capacity", BENCH / "capacity.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.RESULTS = results  # type: ignore[attr-defined]
    return module


def test_capacities_written_by_the_benchmarks_are_used_and_named(tmp_path: Path) -> None:
    bench = _bench_capacity(tmp_path)
    measured = bench.Measured
    fanout = bench.write_capacity("fanout", {
        "api_viewers_per_process": measured(10000, "viewers", "p99 182 ms")})
    bench.write_capacity("edge", {
        "edge_requests_per_s_per_core": measured(3700, "req/s", "wrk"),
        "edge_gbps_per_core": measured(21, "Gbps", "wrk")})
    bench.write_capacity("bus", {"bus_events_per_s": measured(100000, "events/s", "redis")})
    bench.write_capacity("transcode", {
        f"transcode_realtime_per_core.{rung}": measured(factor, "x realtime", "ffmpeg")
        for rung, factor in (("240p", 3.4), ("360p", 2.8), ("480p", 2.2), ("720p", 1.6),
                             ("1080p", 1.0))})
    given = {k: v for k, v in FINAL.items() if k in ("viewers", "ladder_mix")}
    from_files, _ = make_plan(given, tmp_path)
    from_options, _ = make_plan(FINAL, tmp_path / "none")
    assert [line.value for line in from_files.lines] == [
        line.value for line in from_options.lines]
    source = from_files["api_processes"].inputs["viewers per process"].source
    assert source == f"{fanout} (p99 182 ms)"
    # An option wins over a file, and says so.
    overridden, _ = make_plan({**given, "api_viewers_per_process": "20000"}, tmp_path)
    assert overridden["api_processes"].value == 4_658
    assert overridden["api_processes"].inputs["viewers per process"].source == (
        "option --api-viewers-per-process")


def test_the_newest_capacity_file_wins(tmp_path: Path) -> None:
    for at, value in (("20260101T000000", 5000), ("20260301T000000", 7000),
                      ("20260201T000000", 6000)):
        (tmp_path / f"capacity-fanout-{at}.json").write_text(json.dumps({
            "format": "chunkcast-capacity/1", "benchmark": "fanout", "measured_at": at,
            "capacities": {"api_viewers_per_process": {
                "value": value, "unit": "viewers", "how": "fanout"}}}))
    (tmp_path / "capacity-other.json").write_text('{"format": "something else"}')
    assert load_capacity(tmp_path)["api_viewers_per_process"].value == 7000


@pytest.mark.parametrize(("option", "value", "says"), [
    ("ladder_mix", "240p=0.5,720p=0.4", "add up to 0.9"),
    ("viewers", "nan", "--viewers must be"),
    ("viewers", "1e999", "--viewers must be"),
    ("chunk_seconds", "0", "--chunk-seconds must be"),
    ("ladder_mix", "4k=1", "no bitrate for rung 4k"),
    ("ladder_mix", "240p", "expected rung=value"),
    ("utilisation", "1.5", "--utilisation must be"),
    ("nonsense", "1", "unknown option"),
])
def test_bad_input_is_refused_clearly(tmp_path: Path, option: str, value: str,
                                      says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        make_plan({**FINAL, option: value}, tmp_path)


def test_machines_grow_with_the_audience(tmp_path: Path) -> None:
    plan, growth = make_plan(FINAL, tmp_path)
    assert len(growth) == 10
    assert growth[-1]["edge_nodes"] == plan["edge_nodes"].value
    assert growth[-1]["api_hosts"] == plan["api_hosts"].value
    edges = [point["edge_nodes"] for point in growth]
    assert edges == sorted(edges) and edges[0] < edges[-1]


def test_the_cli_prints_the_table_and_json(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", *ARGV, f"--results={tmp_path}"]) == 0
    table = capsys.readouterr().out
    assert "peak egress" in table and "93.1 Tbps" in table
    assert "1,574 nodes" in table and "9,315 processes" in table
    assert "option --api-viewers-per-process" in table

    assert main(["plan", *ARGV, f"--results={tmp_path}", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body == to_json(make_plan(FINAL, tmp_path)[0])
    for key in ("egress_gbps", "edge_nodes", "api_processes", "transcode_cores",
                "storage_tb"):
        assert body[key]["inputs"], key
        assert all(i["source"] for i in body[key]["inputs"].values())


def test_the_cli_names_what_is_missing(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--viewers", "1e6", "--ladder-mix", "240p=1",
                 f"--results={tmp_path}"]) == 2
    assert "--api-viewers-per-process (measured by bench/fanout.py)" in capsys.readouterr().err
