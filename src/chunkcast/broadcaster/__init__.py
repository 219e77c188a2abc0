"""The reference live broadcaster behind ``chunkcast broadcast``.

One ffmpeg encodes the source in real time into MPEG-TS chunks cut at keyframes
(``media/broadcast_argv.py``). Each time the segment muxer announces a closed chunk on
stdout, the chunk is uploaded at once, overlapping with the next ones: ask the API for a
pre-signed PUT, PUT the bytes straight to storage, report the chunk complete.

``captured_at`` (the wall-clock time at which a chunk's first frame was captured) comes from
ffmpeg's ``-progress`` reports, ten a second, each giving ``out_time``, the stream time the
output has reached. ``arrival wall time - out_time`` is the wall clock of stream time 0 plus
whatever the report was delayed by, so its minimum over the reports is the best estimate of
that anchor; a frame at stream time ``t`` was then captured at ``anchor + t``. Files and the
test pattern are read paced by ``-re`` from one fixed start, so the minimum over the whole
broadcast is used (measured against the burnt-in clock: within about 10 ms). Live inputs
arrive on their own clock, which may drift, so the minimum over the last few chunks is used
instead: their ``captured_at`` is the arrival time.
"""

from chunkcast.broadcaster.command import add_arguments, cmd_broadcast, run_broadcast
from chunkcast.broadcaster.timing import (
    CaptureClock,
    ClosedChunk,
    parse_out_time,
    parse_segment_line,
)
from chunkcast.broadcaster.uploads import ResumePoint, chunk_report, parse_resume
from chunkcast.http import Verdict, backoff_s, error_message, verdict

__all__ = [
    "CaptureClock",
    "ClosedChunk",
    "ResumePoint",
    "Verdict",
    "add_arguments",
    "backoff_s",
    "chunk_report",
    "cmd_broadcast",
    "error_message",
    "parse_out_time",
    "parse_resume",
    "parse_segment_line",
    "run_broadcast",
    "verdict",
]
