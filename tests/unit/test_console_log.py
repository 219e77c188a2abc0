"""The `chunkcast up` console: per-chunk timing lines are summed up, everything else shown."""

import io
import json
import logging

from chunkcast.serve import CHUNK_TIMING, ChunkTimingSummary


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("chunkcast.services.transcoding", logging.INFO, __file__, 1, msg,
                             args, None)


def _timing(transcode_s: float) -> logging.LogRecord:
    return _record(CHUNK_TIMING, json.dumps({"video_id": "v", "seq": 1, "group": "sd",
                                             "transcode_s": transcode_s}))


def test_chunk_timings_stay_off_the_console_between_summaries() -> None:
    out = io.StringIO()
    console = ChunkTimingSummary(out)
    console.handle(_timing(0.2))
    console.handle(_record("stream %s ended", "v"))
    assert out.getvalue() == "stream v ended\n"


def test_a_summary_says_how_many_chunks_were_transcoded_and_how_fast() -> None:
    out = io.StringIO()
    console = ChunkTimingSummary(out, every_s=0.0)  # due at every chunk
    console.handle(_timing(0.25))
    assert out.getvalue().startswith("chunk transcodes in the last 0 s: 1, 0.25 s each on "
                                     "average")
    assert "chunk timing" not in out.getvalue()
