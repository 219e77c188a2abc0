"""Faults: what the viewers of a live stream see while parts of the platform fail.

Runs the fault suite's scenarios (tests/integration/fault_scenarios.py) against a live stream
in 1 s chunks with an upload in progress: in the distributed mode (two API processes behind
the nginx balancer, two workers on a host of their own, PostgreSQL, Redis, SeaweedFS) every
fault but one, in the embedded mode the whole process killed and started again. On each
platform the same run goes once without a fault first: its longest interval between segments
is the baseline the stalls are shown against.

Per fault: the stall viewers saw (the longest time without a new segment from the fault's
start to the end of the run), in seconds and as a ratio of the baseline; segments delivered
late (more than 5 s after capture); gaps; chunks lost. Targets: nothing lost in any scenario;
a stall no longer than the outage plus 3 s.

    python bench/faults.py [--outage 10] [--only NAME,NAME]

Needs root (network namespaces), PostgreSQL, Redis, nginx and SeaweedFS (see make
system-deps). Writes bench/results/faults.json.
"""

import argparse
import functools
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from tests.integration import fault_scenarios as faults  # noqa: E402
from tests.integration.cluster import fault_cluster  # noqa: E402
from tests.integration.fault_scenarios import Inject, Platform, run_live  # noqa: E402
from tests.integration.fault_support import STALL_ALLOWANCE_S, Outcome  # noqa: E402

from common import RESULTS, source_clip  # noqa: E402

EMBEDDED = "embedded-killed"


class Bench:
    def __init__(self, outage_s: float, live: Path, upload: Path) -> None:
        self.outage_s = outage_s
        self.live = live
        self.upload = upload
        self.rows: list[dict[str, Any]] = []

    def run(self, platform: Platform, name: str, inject: Inject, baseline: Outcome | None
            ) -> Outcome | None:
        try:
            outcome = run_live(platform, name, self.live, self.upload, inject,
                               outage_s=self.outage_s)
        except AssertionError as exc:  # the scenario could not be set up: say why, go on
            print(f"{name:24} could not run: {exc}", flush=True)
            self.rows.append({"scenario": name, "error": str(exc)})
            platform.heal()
            return None
        row = outcome.as_json()
        if baseline is None:
            print(f"{name:24} longest interval between segments {outcome.stall_s:.2f} s, "
                  f"latency p50 {outcome.latency_p50_s:.2f} s", flush=True)
        else:
            ratio = outcome.stall_s / baseline.stall_s
            row["stall_ratio"] = round(ratio, 2)
            verdict = "ok" if outcome.stall_s <= outcome.budget_s else "MISSED"
            print(f"{name:24} stall {outcome.stall_s:5.1f} s = {ratio:4.1f}x baseline "
                  f"(outage {outcome.outage_s:4.1f} s, target <= {outcome.budget_s:4.1f} s: "
                  f"{verdict}) | late {len(outcome.late):2} | gaps {len(outcome.gaps):2} | "
                  f"lost {len(outcome.lost)}{' | ' if outcome.problems() else ''}"
                  f"{'; '.join(outcome.problems())}", flush=True)
        self.rows.append(row)
        return outcome

    def platform(self, platform: Platform, label: str, scenarios: dict[str, Inject]) -> None:
        baseline = self.run(platform, f"{label}-baseline", faults.no_fault, None)
        if baseline is None:
            raise SystemExit(f"the {label} platform does not stream without a fault")
        for name, inject in scenarios.items():
            self.run(platform, name, inject, baseline)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float,
                        default=float(os.environ.get("CHUNKCAST_FAULT_OUTAGE_S", 10)),
                        help="seconds a stopped server stays down (CHUNKCAST_FAULT_OUTAGE_S)")
    parser.add_argument("--delay", type=float, default=0.05,
                        help="seconds added to each worker round trip in workers-delayed "
                             "(0.05: servers in another region)")
    parser.add_argument("--only", default="", help="scenarios to run, comma-separated: "
                        + ", ".join([*faults.DISTRIBUTED, EMBEDDED]))
    args = parser.parse_args()
    faults.DELAY_S = args.delay
    only = {n for n in args.only.split(",") if n}
    bench = Bench(args.outage, source_clip(10, "426x240"), source_clip(12, "426x240"))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="chunkcast-faults-") as tmp:
        chosen = [n for n in faults.DISTRIBUTED if not only or n in only]
        if chosen:
            with fault_cluster(Path(tmp) / "distributed", **faults.SETTINGS) as cluster:
                bench.platform(cluster, "distributed", {
                    name: functools.partial(faults.DISTRIBUTED[name], cluster)
                    for name in chosen})
        if not only or EMBEDDED in only:
            with faults.embedded(Path(tmp) / "embedded", **faults.SETTINGS) as embedded:
                bench.platform(embedded, "embedded", {
                    EMBEDDED: functools.partial(faults.embedded_killed, embedded)})
    measured = [r for r in bench.rows if "stall_ratio" in r]
    verdict = {
        "no_loss": all(r["lost"] == 0 for r in measured) and len(measured) > 0,
        "stall_ok": all(r["stall_s"] <= r["budget_s"] for r in measured) and len(measured) > 0,
        "all_ran": not any("error" in r for r in bench.rows),
    }
    print(f"verdict: nothing lost {'ok' if verdict['no_loss'] else 'MISSED'}; every stall "
          f"<= outage + {STALL_ALLOWANCE_S:.0f} s {'ok' if verdict['stall_ok'] else 'MISSED'}"
          f" ({time.monotonic() - started:.0f} s)")
    RESULTS.mkdir(exist_ok=True)
    # A run of the delay alone at another delay is kept beside the full run's figures.
    delay_only = args.only == "workers-delayed"
    path = RESULTS / (f"faults-delay{args.delay:g}.json" if delay_only else "faults.json")
    path.write_text(json.dumps({
        "benchmark": "faults", "at": time.strftime("%Y%m%dT%H%M%S"),
        "machine": platform.node(), "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "settings": {"outage_s": args.outage, "delay_s": args.delay, **faults.SETTINGS},
        "targets": {"lost": 0, "stall_s": f"outage + {STALL_ALLOWANCE_S:.0f}"},
        "verdict": verdict, "results": bench.rows}, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
