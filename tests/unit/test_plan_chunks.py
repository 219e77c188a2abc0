"""How the splitter cuts a VOD source into chunks."""

import itertools

import pytest

from chunkcast.services.ingest import plan_chunks


@pytest.mark.parametrize(
    ("duration", "chunk", "starts", "lengths"),
    [
        (30.0, 10, [0, 10, 20], [10, 10, 10]),
        (30.2, 10, [0, 10, 20], [10, 10, 10.2]),
        (25.0, 10, [0, 10, 20], [10, 10, 5]),
        (3.0, 10, [0], [3]),
        (10.0, 10, [0], [10]),
        (31.0, 10, [0, 10, 20, 30], [10, 10, 10, 1]),
        (0.4, 10, [0], [0.4]),
        (10.01, 10, [0], [10.01]),
        (5.0, 2, [0, 2, 4], [2, 2, 1]),
    ],
)
def test_plan_chunks(duration: float, chunk: int, starts: list[float],
                     lengths: list[float]) -> None:
    spans = plan_chunks(duration, chunk)
    assert [start for start, _ in spans] == starts
    assert [length for _, length in spans] == pytest.approx(lengths)


@pytest.mark.parametrize("chunk", [2, 4, 10])
@pytest.mark.parametrize("duration", [0.4, 1.0, 2.0, 9.99, 10.0, 10.01, 19.6, 60.0, 61.3,
                                      3600.04])
def test_spans_cover_the_source_without_gaps(duration: float, chunk: int) -> None:
    spans = plan_chunks(duration, chunk)
    assert spans[0][0] == 0
    for (start, length), (next_start, _) in itertools.pairwise(spans):
        assert start + length == pytest.approx(next_start)
        assert length == chunk
    for start, length in spans:
        assert start % chunk == 0, "chunks start on whole chunk boundaries"
        assert length > 0
    if len(spans) > 1:
        assert spans[-1][1] >= 0.5, "a tiny tail joins the chunk before it"
    assert sum(length for _, length in spans) == pytest.approx(duration)
    assert spans[-1][0] + spans[-1][1] == pytest.approx(duration)


def test_a_source_that_would_make_too_many_chunks_is_refused() -> None:
    import math

    from chunkcast.domain.errors import MediaError
    from chunkcast.services.ingest import MAX_CHUNKS

    assert len(plan_chunks(MAX_CHUNKS * 2.0, 2.0)) == MAX_CHUNKS
    for duration in (MAX_CHUNKS * 2.0 + 3, 3.6e9, math.inf, math.nan, 0.0):
        with pytest.raises(MediaError):
            plan_chunks(duration, 2.0)
