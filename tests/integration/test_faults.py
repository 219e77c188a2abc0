"""Faults during a live stream (1 s chunks) with an upload in progress, in the distributed
mode (two API processes behind the balancer, two workers on a host of their own, Redis,
PostgreSQL, SeaweedFS) and, for a whole-process crash, the embedded mode.

For each fault: the upload ends ready; the stream stays live; every chunk captured after the
fault reaches the viewers, and those during it arrive late or as explicit gaps, never
silently lost; viewers resume with ``since``; they see no new segment for at most the outage
plus 3 s. The stall of each fault is reported at the end (and in
``test-artifacts/faults.json``). Stops last ``CHUNKCAST_FAULT_OUTAGE_S`` (4 s by default).

One cluster serves every distributed scenario; whatever a fault leaves down is brought back
after each. Network faults need root (network namespaces): without it they are skipped.
"""

import contextlib
import functools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chunkcast.testing import make_clip
from tests.integration import fault_scenarios as faults
from tests.integration.cluster import FaultCluster, fault_cluster
from tests.integration.fault_scenarios import run_live
from tests.integration.fault_support import Outcome, outage_seconds
from tests.servers.netns import NetnsUnavailable, check_available

pytestmark = [pytest.mark.integration, pytest.mark.faults]

OUTAGE_S = outage_seconds()
ARTIFACTS = Path(os.environ.get("CHUNKCAST_ARTIFACTS", "test-artifacts"))


@dataclass(frozen=True)
class Media:
    live: Path  # broadcast in a loop
    upload: Path  # uploaded just before each fault


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    folder = tmp_path_factory.mktemp("fault-media")
    return Media(make_clip(folder / "live.mp4", seconds=10, size="426x240"),
                 make_clip(folder / "upload.mp4", seconds=12, size="426x240"))


@pytest.fixture(scope="module")
def outcomes(request: pytest.FixtureRequest) -> Iterator[list[Outcome]]:
    """Every run's outcome, shown at the end of the module and kept as JSON."""
    found: list[Outcome] = []
    yield found
    if not found:
        return
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "faults.json").write_text(json.dumps([o.as_json() for o in found], indent=2))
    plugins = request.config.pluginmanager
    reporter, capture = plugins.getplugin("terminalreporter"), plugins.getplugin("capturemanager")
    if reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.write_line(f"\nfaults (outage {OUTAGE_S:.0f} s):")
        for outcome in found:
            verdict = "ok" if not outcome.problems() else "MISSED"
            reporter.write_line(f"  {verdict:6} {outcome.summary()}")


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultCluster]:
    try:
        check_available()
    except NetnsUnavailable as exc:
        pytest.skip(f"the distributed faults run the workers in a network namespace: {exc}")
    with fault_cluster(tmp_path_factory.mktemp("faults"), **faults.SETTINGS) as cluster:
        yield cluster


@pytest.fixture
def cluster(shared_cluster: FaultCluster) -> Iterator[FaultCluster]:
    """The shared cluster, with whatever a scenario left down brought back afterwards."""
    yield shared_cluster
    shared_cluster.heal()


def check(outcome: Outcome, outcomes: list[Outcome]) -> None:
    outcomes.append(outcome)
    assert not outcome.problems(), outcome.report()


@pytest.mark.parametrize("name", list(faults.DISTRIBUTED))
def test_a_live_stream_and_an_upload_ride_out(name: str, cluster: FaultCluster, media: Media,
                                              outcomes: list[Outcome]) -> None:
    """One fault of the distributed cluster (see ``faults.DISTRIBUTED``: delayed and
    partitioned workers, SeaweedFS stopped, PostgreSQL and Redis restarted and stopped, a
    worker and an API process killed, the broadcaster restarted)."""
    scenario = functools.partial(faults.DISTRIBUTED[name], cluster)
    check(run_live(cluster, name, media.live, media.upload, scenario, outage_s=OUTAGE_S),
          outcomes)


def test_embedded_process_killed_and_restarted(tmp_path: Path, media: Media,
                                               outcomes: list[Outcome]) -> None:
    with faults.embedded(tmp_path, **faults.SETTINGS) as platform:
        check(run_live(platform, "embedded-killed", media.live, media.upload,
                       functools.partial(faults.embedded_killed, platform),
                       outage_s=OUTAGE_S), outcomes)
