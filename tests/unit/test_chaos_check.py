"""The chaos run's checker on small hand-made histories: a clean one passes, and each
kind of wrong one fails (so the checker can fail)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from shared.events import ENDED, RESUMED, iso
from tests.chaos_check import CHECK, FEED, Call, Deadlines, Event, Fault, Final, Report, check

T0 = 1_800_000_000.0
N = "+15095551000"
M = "+15095551001"
DEADLINES = Deadlines(change=2.25, read=4.25, margin=1.0)


def change(
    kind: str,
    request_id: str,
    start: float,
    end: float,
    *,
    numbers: Sequence[str] = (N,),
    success: Sequence[str] | None = None,
    status: int | None = 201,
    error: str | None = None,
) -> Call:
    """A change request of `numbers`, sent at T0 + start, answered at T0 + end; by
    default every number a success."""
    answered = status == 201
    succeeded = tuple(numbers if success is None else success) if answered else ()
    return Call(
        kind,
        request_id,
        "key_a",
        T0 + start,
        T0 + end,
        end - start,
        status=status,
        error=error,
        retry_after=status in (429, 503),
        numbers=tuple(numbers),
        reason=f"because {request_id}",
        success=succeeded,
        failure=tuple(n for n in numbers if n not in succeeded) if answered else (),
    )


def event(request_id: str, kind: str, at: float, number: str = N, index: int = 0) -> Event:
    ms = round((T0 + at) * 1000)
    return {
        "id": f"{ms}-0-{index}",
        "type": kind,
        "phoneNumber": number,
        "at": iso(ms),
        "keyId": "key_a",
        "requestId": request_id,
        "reason": f"because {request_id}",
    }


def follow(events: Sequence[Event], start: float) -> Call:
    """A page of the feed, as its follower saw it."""
    return Call(
        FEED,
        f"feed-{start}",
        "key_a",
        T0 + start,
        T0 + start + 0.01,
        0.01,
        status=200,
        events=tuple(events),
    )


def checked(marks: dict[str, str | None], start: float) -> Call:
    return Call(
        CHECK,
        f"check-{start}",
        "key_a",
        T0 + start,
        T0 + start + 0.01,
        0.01,
        status=200,
        marks=marks,
    )


def final(feed: Sequence[Event], **given: Any) -> Final:
    """The end as it should be for `feed`, but for what is `given`."""
    histories: dict[str, list[Event]] = {}
    marks: dict[str, str | None] = {N: None, M: None}
    for e in feed:
        histories.setdefault(str(e["phoneNumber"]), []).append(e)
        marks[str(e["phoneNumber"])] = str(e["at"]) if e["type"] == ENDED else None
    made = Final(feed, histories, marks, dict(marks), list(feed))
    return replace(made, **given)


def rules(report: Report) -> list[str]:
    return [v.rule for v in report.violations]


def test_a_clean_run_passes() -> None:
    """Ended by one client, checked, resumed by another, followed, delivered."""
    ended, resumed = event("c1-0", ENDED, 0.05), event("c2-0", RESUMED, 1.05)
    calls = [
        change(ENDED, "c1-0", 0.0, 0.1),
        checked({N: str(ended["at"]), M: None}, 0.5),
        follow([ended], 0.6),
        change(RESUMED, "c2-0", 1.0, 1.1),
        follow([resumed], 1.2),
        follow([], 1.3),
    ]
    report = check(calls, [], final([ended, resumed]), DEADLINES)
    assert report.violations == []
    assert report.figures["numbers acknowledged"] == 2
    assert report.figures["lost"] == 0
    assert report.figures["events delivered"] == 2


def test_an_acknowledged_end_gone_at_the_end_is_lost() -> None:
    """The store lost the mark and its event: the 201 said ended, the end says not."""
    calls = [change(ENDED, "c1-0", 0.0, 0.1)]
    faults = [Fault("SIGKILL", "store", T0 + 0.2, T0 + 0.3)]
    report = check(calls, faults, final([]), DEADLINES)
    assert "lost" in rules(report)
    assert report.figures["lost"] == 1
    lost = next(v for v in report.violations if v.rule == "lost")
    assert N in lost.detail
    assert "c1-0" in lost.detail


def test_changes_at_the_same_time_may_end_either_way() -> None:
    """A resume acknowledged while an end was in flight: the end may come last."""
    calls = [
        change(RESUMED, "c2-0", 0.0, 1.0),  # not ended then: a repeat, no event
        change(ENDED, "c1-0", 0.2, 0.8),
    ]
    report = check(calls, [], final([event("c1-0", ENDED, 0.5)]), DEADLINES)
    assert report.violations == []


def test_a_failure_that_lands_after_its_answer_is_caught() -> None:
    """A resume answered as a failure at 2.3 s is written at 3.5 s (its worker was
    stopped with it in hand), after an end acknowledged at 3.1 s: the end is lost,
    undone by a change that had been answered before it began."""
    calls = [
        change(RESUMED, "c2-0", 0.0, 2.3, success=()),
        change(ENDED, "c1-0", 3.0, 3.1),
    ]
    faults = [Fault("SIGSTOP", "worker", T0 + 0.1, T0 + 3.4)]
    feed = [event("c1-0", ENDED, 3.05), event("c2-0", RESUMED, 3.5)]
    report = check(calls, faults, final(feed), DEADLINES)
    assert sorted(set(rules(report))) == ["effect", "lost"]
    assert "SIGSTOP worker" in " ".join(v.detail for v in report.violations)


def test_the_feed_has_each_event_once_and_in_order() -> None:
    first, second = event("c1-0", ENDED, 0.05), event("c2-0", RESUMED, 1.05)
    calls = [change(ENDED, "c1-0", 0.0, 0.1), change(RESUMED, "c2-0", 1.0, 1.1)]
    twice = check(calls, [], final([first, first, second]), DEADLINES)
    assert "feed" in rules(twice)
    assert twice.figures["feed duplicates"] == 1
    swapped = check(calls, [], final([second, first]), DEADLINES)
    assert "feed" in rules(swapped)


def test_what_the_follower_saw_is_the_start_of_the_final_feed() -> None:
    """The follower saw an event that the final feed no longer has."""
    first, second = event("c1-0", ENDED, 0.05), event("c2-0", ENDED, 1.05, number=M)
    calls = [
        change(ENDED, "c1-0", 0.0, 0.1),
        follow([first], 0.5),
        change(ENDED, "c2-0", 1.0, 1.1, numbers=(M,)),
    ]
    marks = {N: str(first["at"]), M: str(second["at"])}
    report = check(calls, [], final([second], marks=marks, lookups=marks), DEADLINES)
    assert "feed" in rules(report)


def test_each_history_is_its_numbers_events_in_the_feed() -> None:
    ended, resumed = event("c1-0", ENDED, 0.05), event("c2-0", RESUMED, 1.05)
    calls = [change(ENDED, "c1-0", 0.0, 0.1), change(RESUMED, "c2-0", 1.0, 1.1)]
    report = check(calls, [], final([ended, resumed], histories={N: [ended]}), DEADLINES)
    assert rules(report) == ["history"]


def test_every_event_is_delivered_at_least_once() -> None:
    ended, resumed = event("c1-0", ENDED, 0.05), event("c2-0", RESUMED, 1.05)
    calls = [change(ENDED, "c1-0", 0.0, 0.1), change(RESUMED, "c2-0", 1.0, 1.1)]
    missed = check(calls, [], final([ended, resumed], deliveries=[ended]), DEADLINES)
    assert rules(missed) == ["webhook"]
    twice = check(calls, [], final([ended, resumed], deliveries=[ended, ended, resumed]), DEADLINES)
    assert twice.violations == []
    assert twice.figures["webhook redeliveries"] == 1


def test_an_answer_past_its_deadline_is_late_unless_the_web_was_stopped() -> None:
    late = change(ENDED, "c1-0", 0.0, 3.5, success=())
    report = check([late], [], final([]), DEADLINES)
    assert rules(report) == ["late"]
    assert report.figures["late answers"] == 1
    timed_out = change(ENDED, "c1-1", 0.0, 9.0, status=None, error="timeout")
    assert rules(check([timed_out], [], final([]), DEADLINES)) == ["late"]
    stopped = [Fault("SIGSTOP", "web", T0 + 0.5, T0 + 2.5)]
    assert check([late], stopped, final([]), DEADLINES).violations == []


def test_no_server_error_but_503_with_retry_after() -> None:
    error = change(ENDED, "c1-0", 0.0, 0.1, status=500)
    bare = replace(change(ENDED, "c1-1", 0.2, 0.3, status=503), retry_after=False)
    busy = change(ENDED, "c1-2", 0.4, 0.5, status=503)
    gone = change(ENDED, "c1-3", 0.6, 0.7, status=None, error="connection")
    report = check([error, bare, busy, gone], [], final([]), DEADLINES)
    assert rules(report) == ["answer", "answer"]
    assert report.figures["connection errors (no answer)"] == 1


def test_a_check_sees_a_state_the_number_had_while_it_was_asked() -> None:
    ended = event("c1-0", ENDED, 0.05)
    calls = [change(ENDED, "c1-0", 0.0, 0.1), checked({N: None}, 2.0)]
    report = check(calls, [], final([ended]), DEADLINES)
    assert rules(report) == ["state"]
    assert "check-2.0" in report.violations[0].detail


def test_an_acknowledged_change_without_its_event_must_be_a_repeat() -> None:
    """Ended with no event, though it was never ended: the event is missing."""
    calls = [change(ENDED, "c1-0", 0.0, 0.1)]
    marks = {N: iso(round((T0 + 0.05) * 1000)), M: None}
    report = check(calls, [], final([], marks=marks, lookups=marks), DEADLINES)
    assert "missing event" in rules(report)


def test_a_refused_request_changes_nothing() -> None:
    calls = [change(ENDED, "c1-0", 0.0, 0.1, status=503)]
    report = check(calls, [], final([event("c1-0", ENDED, 0.05)]), DEADLINES)
    assert rules(report) == ["effect"]
