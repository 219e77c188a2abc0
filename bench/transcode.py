"""VOD transcode throughput: the platform's upload path versus one raw ffmpeg ladder command.

Both encode the same 30 s 720p30 source with audio into the default 4-rung ladder
(720p/480p/360p/240p, fMP4 HLS, veryfast) on this machine, in the same run, alternating so
that background noise hits both. The baseline is a single ffmpeg (one decode, split filter,
4 encodes). The platform's figure is wall time from "upload complete" to status "ready"
(probe, chunking, parallel chunk transcodes, storing segments, playlists).

    python bench/transcode.py [--runs 3] [--chunk-seconds N] [--concurrency N]
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from chunkcast.domain.ladder import choose_ladder
from chunkcast.media.argv import EncodeOptions, ladder_argv
from chunkcast.media.inputs import MediaInput
from chunkcast.media.process import ffmpeg_path
from chunkcast.testing import Server, run_server
from common import median, source_clip, upload_and_wait, write_result

SECONDS = 30


def raw_ffmpeg(source: Path, preset: str) -> float:
    """Wall seconds of the single-command ladder."""
    renditions = choose_ladder(1280, 720, 30.0)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for r in renditions:
            (out / r.name).mkdir()
        argv = ladder_argv(ffmpeg_path(), MediaInput(str(source), "mov"), renditions, out,
                           has_audio=True,
                           opts=EncodeOptions(preset=preset))
        started = time.perf_counter()
        subprocess.run(argv, check=True)
        return time.perf_counter() - started


def platform_upload(server: Server, source: Path) -> float:
    """Wall seconds from upload complete to ready."""
    elapsed, video = upload_and_wait(server, source)
    if len(video["renditions"]) != 4:
        raise SystemExit(f"expected 4 renditions, got {video['renditions']}")
    httpx.delete(f"{server.url}/api/v1/videos/{video['id']}",
                 headers={"Authorization": f"Bearer {server.token}"})
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chunk-seconds", type=int, help="CHUNKCAST_VOD_CHUNK_SECONDS")
    parser.add_argument("--concurrency", type=int, help="CHUNKCAST_WORKER_CONCURRENCY")
    parser.add_argument("--preset", default="veryfast")
    args = parser.parse_args()

    source = source_clip(SECONDS, "1280x720")
    env = {"CHUNKCAST_X264_PRESET": args.preset}
    if args.chunk_seconds:
        env["CHUNKCAST_VOD_CHUNK_SECONDS"] = str(args.chunk_seconds)
    if args.concurrency:
        env["CHUNKCAST_WORKER_CONCURRENCY"] = str(args.concurrency)
    raw: list[float] = []
    ours: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, run_server(Path(tmp) / "data", env=env) as server:
        platform_upload(server, source)  # warm-up: imports, first DB writes
        for run in range(args.runs):
            raw.append(raw_ffmpeg(source, args.preset))
            ours.append(platform_upload(server, source))
            print(f"run {run + 1}: raw ffmpeg {raw[-1]:.2f} s, platform {ours[-1]:.2f} s",
                  flush=True)
    raw_rtf = SECONDS / median(raw)
    our_rtf = SECONDS / median(ours)
    ratio = our_rtf / raw_rtf
    print(f"raw ffmpeg ladder: {raw_rtf:.2f}x realtime (median of {args.runs})")
    print(f"platform VOD path: {our_rtf:.2f}x realtime (median of {args.runs})")
    print(f"ratio platform / raw: {ratio:.2f} (target >= 0.90)")
    path = write_result("transcode", {
        "source": {"seconds": SECONDS, "size": "1280x720", "fps": 30, "audio": True},
        "settings": env, "runs": args.runs,
        "raw_seconds": raw, "platform_seconds": ours,
        "raw_realtime_factor": raw_rtf, "platform_realtime_factor": our_rtf,
        "ratio": ratio, "target_ratio": 0.9,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
