"""The video life cycle state machine."""

import itertools

import pytest

from chunkcast.domain.errors import Conflict
from chunkcast.domain.videos import VideoStatus, can_move, check_move

S = VideoStatus

ALLOWED = {
    (S.CREATED, S.UPLOADED), (S.CREATED, S.FAILED),
    (S.UPLOADED, S.PROCESSING), (S.UPLOADED, S.FAILED),
    (S.PROCESSING, S.READY), (S.PROCESSING, S.FAILED),
    (S.IDLE, S.LIVE), (S.IDLE, S.ENDED), (S.IDLE, S.FAILED),
    (S.LIVE, S.ENDED), (S.LIVE, S.FAILED),
}
ALL_PAIRS = list(itertools.product(VideoStatus, repeat=2))


@pytest.mark.parametrize(("current", "new"), ALL_PAIRS, ids=lambda s: s.value)
def test_can_move_matches_the_life_cycle(current: VideoStatus, new: VideoStatus) -> None:
    assert can_move(current, new) == ((current, new) in ALLOWED)


@pytest.mark.parametrize(("current", "new"), sorted(ALLOWED), ids=lambda s: s.value)
def test_check_move_allows(current: VideoStatus, new: VideoStatus) -> None:
    check_move(current, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [(S.READY, S.PROCESSING), (S.FAILED, S.READY), (S.ENDED, S.LIVE), (S.CREATED, S.READY),
     (S.LIVE, S.IDLE), (S.LIVE, S.LIVE), (S.UPLOADED, S.LIVE), (S.IDLE, S.PROCESSING)],
    ids=lambda s: s.value,
)
def test_check_move_refuses_with_conflict(current: VideoStatus, new: VideoStatus) -> None:
    with pytest.raises(Conflict) as raised:
        check_move(current, new)
    assert raised.value.status == 409
    assert current.value in raised.value.message and new.value in raised.value.message


@pytest.mark.parametrize("final", [S.READY, S.FAILED, S.ENDED])
def test_final_states_never_change(final: VideoStatus) -> None:
    assert not any(can_move(final, new) for new in VideoStatus)


@pytest.mark.parametrize("status", [S.CREATED, S.UPLOADED, S.PROCESSING, S.IDLE, S.LIVE])
def test_an_unfinished_video_can_always_fail(status: VideoStatus) -> None:
    assert can_move(status, S.FAILED)


def test_status_predicates_are_the_one_home_of_status_rules() -> None:
    from chunkcast.domain.videos import sources_of

    S = VideoStatus
    assert [s for s in S if s.is_playable] == [S.READY, S.LIVE, S.ENDED]
    assert [s for s in S if s.is_complete] == list(S.complete_ones()) == [S.READY, S.ENDED]
    assert [s for s in S if s.is_final] == [S.READY, S.FAILED, S.ENDED]
    assert [s for s in S if s.is_broadcasting] == [S.IDLE, S.LIVE]
    assert [s for s in S if s.is_splittable] == [S.UPLOADED, S.PROCESSING]
    # Whatever is open may still fail, and that is what the state machine says too.
    assert list(S.open_ones()) == list(sources_of(S.FAILED))
    assert sources_of(S.ENDED) == (S.IDLE, S.LIVE)
    assert not any(s.is_open for s in S if s.is_final)
