"""VOD transcode throughput: the platform's upload path versus one raw ffmpeg ladder command.

Both encode the same 30 s 720p30 source with audio into the default 4-rung ladder
(720p/480p/360p/240p, fMP4 HLS, veryfast) on this machine, in the same run, alternating so
that background noise hits both. The baseline is a single ffmpeg (one decode, split filter,
4 encodes). The platform's figure is wall time from "upload complete" to status "ready"
(probe, chunking, parallel chunk transcodes, storing segments, playlists).

    python bench/transcode.py [--runs 3] [--chunk-seconds N] [--concurrency N]
                              [--rung-seconds 10] [--rungs-only]

Then the capacity ``chunkcast plan`` reads: each rung of the 1080p ladder encoded alone from
a 1080p30 MPEG-TS chunk by the live path's ffmpeg command, its realtime factor per core =
media seconds / ffmpeg's CPU seconds (user + system), median of ``--runs``.
"""

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from capacity import Measured, write_capacity
from chunkcast.domain.ladder import choose_ladder
from chunkcast.domain.plan import realtime_name
from chunkcast.media.argv import EncodeOptions, ladder_argv, live_chunk_argv
from chunkcast.media.inputs import LIVE_CHUNK_FORMAT, MediaInput
from chunkcast.media.process import ffmpeg_path
from chunkcast.testing import Server, run_server
from common import MEDIA, median, source_clip, upload_and_wait, write_result

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


def live_chunk(seconds: int) -> Path:
    """A 1080p30 MPEG-TS chunk with AAC, as a broadcaster cuts them (1 s GOP), cached."""
    MEDIA.mkdir(exist_ok=True)
    path = MEDIA / f"chunk-1920x1080-30fps-{seconds}s.ts"
    if not path.exists():
        subprocess.run([
            ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size=1920x1080:rate=30:duration={seconds}",
            "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "30",
            "-sc_threshold", "0", "-b:v", "6000k", "-c:a", "aac", "-b:a", "128k",
            "-ar", "48000", "-ac", "2", "-f", "mpegts", str(path)], check=True)
    return path


def cpu_seconds(argv: list[str]) -> float:
    """User + system CPU seconds of one command (it is waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def rung_capacity(seconds: int, runs: int, preset: str) -> dict[str, float]:
    """Realtime factor per core of each rung: ``seconds`` of a 1080p chunk encoded into that
    rung alone by the live path's command (decode and scale included, AAC copied)."""
    chunk = MediaInput(str(live_chunk(seconds)), LIVE_CHUNK_FORMAT)
    factors = {}
    for rendition in choose_ladder(1920, 1080, 30.0):
        spent = []
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / rendition.name).mkdir()
                spent.append(cpu_seconds(live_chunk_argv(
                    ffmpeg_path(), chunk, [rendition], Path(tmp), has_audio=True,
                    copy_audio=True, opts=EncodeOptions(preset=preset))))
        factors[rendition.name] = seconds / median(spent)
        print(f"{rendition.name}: {factors[rendition.name]:.2f}x realtime per core "
              f"(median CPU {median(spent):.2f} s for {seconds} s)", flush=True)
    return factors


def write_rung_capacity(args: argparse.Namespace) -> None:
    factors = rung_capacity(args.rung_seconds, args.runs, args.preset)
    how = (f"{args.rung_seconds} s 1080p30 test-pattern chunk into this rung alone, live "
           f"argv, x264 {args.preset}, media s / ffmpeg CPU s, median of {args.runs}")
    path = write_result("transcode-rungs", {
        "source": {"seconds": args.rung_seconds, "size": "1920x1080", "fps": 30},
        "preset": args.preset, "runs": args.runs, "realtime_per_core": factors})
    written = write_capacity("transcode", {
        realtime_name(rung): Measured(factor, "x realtime", f"{how}; {path.name}")
        for rung, factor in factors.items()}, path)
    print(f"capacity: {written}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chunk-seconds", type=int, help="CHUNKCAST_VOD_CHUNK_SECONDS")
    parser.add_argument("--concurrency", type=int, help="CHUNKCAST_WORKER_CONCURRENCY")
    parser.add_argument("--preset", default="veryfast")
    parser.add_argument("--rung-seconds", type=int, default=10,
                        help="media seconds per rung for the capacity measurement")
    parser.add_argument("--rungs-only", action="store_true",
                        help="measure only the per-rung capacity (not the VOD path)")
    args = parser.parse_args()
    if args.rungs_only:
        write_rung_capacity(args)
        return

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
    write_rung_capacity(args)


if __name__ == "__main__":
    main()
