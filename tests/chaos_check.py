"""The checker of a chaos run (tests/chaos.py): what the clients saw, judged against
what the service promises (docs/api.md). Pure: it reads the run's record and says what was
wrong, with the faults that came before, and the figures.

What is checked, and why each rule is as strict as it can be:

- **lost**: a number in a 201's `success` is in that state at the end, unless another
  change of the number may have come after it: one whose request had not been answered
  when this one started (concurrent or later), and that took effect (acknowledged, or
  its event is in the feed: a `failure` says "send it again", not "nothing happened").
- **effect**: every event was made by one of our requests, as asked (number, type, key,
  reason), while it was in flight: not after its answer (a worker must discard a task
  whose request gave up), and never for a request answered with anything but a 201.
- **missing event**: an acknowledged change with no event of its own must have been a
  repeat: the number was already in that state at some instant while it was in flight.
- **feed**: ids strictly increase (each event once, in order); the tail a client
  followed with `after` is the start of the final feed, event for event.
- **history**: each number's history is its events in the feed, the same and in the
  same order, alternating ended and resumed from ended.
- **state**: at the end the check and the lookup say what the last event says; and
  every check during the run saw a state the number had while it was in flight.
- **webhook**: every event of the feed was delivered at least once, as the feed has it.
- **late**: each answer came within its deadline plus a margin; a web stopped with
  SIGSTOP adds the time it was stopped (it cannot answer meanwhile); a client timeout
  is late.
- **answer**: no 5xx but a 503 with Retry-After (a 429 needs it too); no status the
  endpoint does not give. Connection errors (the web killed) are counted, not judged:
  the client saw no answer, so nothing was acknowledged.

Times: `started`/`finished` are wall-clock seconds (time.time()) on the machine the
service runs on; an event id's milliseconds are the store's clock (XADD), the same one.

One file over 400 lines: one judge, its rules above each read over the same record.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.events import ENDED, RESUMED, EventId

CHECK = "check"
FEED = "feed"
CHANGES = (ENDED, RESUMED)
# Milliseconds of slack between a client's clock reading and the store's: the same
# clock, but a request's times are taken around the HTTP call, not in the store.
SLACK_MS = 2

# An event as the API shows it: id, type, phoneNumber, at, keyId, requestId, reason.
Event = Mapping[str, Any]


@dataclass(frozen=True)
class Call:
    """One request as its client saw it."""

    kind: str  # ENDED or RESUMED (a change), CHECK or FEED
    request_id: str  # the X-Request-ID it was sent with
    key_id: str
    started: float  # wall clock, just before sending
    finished: float  # wall clock, when the answer (or the error) came
    elapsed: float  # seconds, by the monotonic clock
    status: int | None = None  # None: no answer
    error: str | None = None  # why no answer: "connection" or "timeout"
    retry_after: bool = False  # the answer had a Retry-After header
    numbers: tuple[str, ...] = ()  # E.164, as sent
    reason: str | None = None
    success: tuple[str, ...] = ()
    failure: tuple[str, ...] = ()
    # A check's answer: number -> endedAt, or None when not ended.
    marks: Mapping[str, str | None] = field(default_factory=dict)
    events: tuple[Event, ...] = ()  # a feed page's events

    @property
    def answered(self) -> bool:
        return self.status is not None


@dataclass(frozen=True)
class Fault:
    """What the nemesis did: `signal` ("SIGKILL" or "SIGSTOP") to `target` ("worker",
    "web", "broker", "store") at `at`, until `until` (continued, or running again)."""

    signal: str
    target: str
    at: float
    until: float

    @property
    def name(self) -> str:
        return f"{self.signal} {self.target}"


@dataclass(frozen=True)
class Final:
    """What was read once the faults had stopped and everything ran again."""

    feed: Sequence[Event]  # the whole feed, followed from the start
    histories: Mapping[str, Sequence[Event]]  # number -> its history's events
    marks: Mapping[str, str | None]  # the check of every number: endedAt or None
    lookups: Mapping[str, str | None]  # the lookup of every number: endedAt or None
    deliveries: Sequence[Event]  # the `data` of every webhook delivery, as received


@dataclass(frozen=True)
class Deadlines:
    """Seconds an answer may take: a change, a read, and the margin on top of each."""

    change: float
    read: float
    margin: float

    def of(self, kind: str) -> float:
        return (self.change if kind in CHANGES else self.read) + self.margin


@dataclass(frozen=True)
class Violation:
    rule: str
    detail: str


@dataclass
class Report:
    violations: list[Violation]
    figures: dict[str, int | float | str]

    def text(self) -> str:
        lines = [f"{name}: {value}" for name, value in self.figures.items()]
        lines += [f"VIOLATION {v.rule}: {v.detail}" for v in self.violations]
        return "\n".join(lines)


def check(
    calls: Sequence[Call], faults: Sequence[Fault], final: Final, deadlines: Deadlines
) -> Report:
    run = _Run(calls, faults, final, deadlines)
    run.answers()
    run.late()
    run.feed()
    run.tail()
    run.histories()
    run.effects()
    run.acknowledged()
    run.states()
    run.webhook()
    return Report(run.violations, run.figures())


def event_id(event: Event) -> EventId:
    return EventId.parse(str(event["id"]))


def _ms_range(call: Call) -> tuple[int, int]:
    return math.floor(call.started * 1000) - SLACK_MS, math.ceil(call.finished * 1000) + SLACK_MS


def _state_after(event: Event) -> str | None:
    """A number's state after its event: its endedAt when ended, None when not."""
    return str(event["at"]) if event["type"] == ENDED else None


class _Timeline:
    """A number's states over time, from its events in the feed."""

    def __init__(self, events: Iterable[Event]) -> None:
        self.steps = [(event_id(e).ms, _state_after(e)) for e in events]

    def during(self, lo_ms: int, hi_ms: int) -> set[str | None]:
        """Every state the number had at some instant from lo_ms to hi_ms."""
        current: str | None = None  # never changed: not ended
        seen: set[str | None] = set()
        for ms, state in self.steps:
            if ms < lo_ms:
                current = state
            elif ms <= hi_ms:
                seen.add(state)
        return seen | {current}

    @property
    def last(self) -> str | None:
        return self.steps[-1][1] if self.steps else None


class _Run:
    def __init__(
        self, calls: Sequence[Call], faults: Sequence[Fault], final: Final, deadlines: Deadlines
    ) -> None:
        self.calls = list(calls)
        self.faults = sorted(faults, key=lambda f: f.at)
        self.final = final
        self.deadlines = deadlines
        self.violations: list[Violation] = []
        self.origin = min([c.started for c in calls] + [f.at for f in faults], default=0.0)
        self.by_request = {c.request_id: c for c in calls}
        self.changes = [c for c in calls if c.kind in CHANGES]
        self.by_number: dict[str, list[Event]] = {}
        for event in final.feed:
            self.by_number.setdefault(str(event["phoneNumber"]), []).append(event)
        self.timelines = {n: _Timeline(events) for n, events in self.by_number.items()}
        # (request id, number) -> its event
        self.made = {(str(e["requestId"]), str(e["phoneNumber"])): e for e in final.feed}
        self.counts: Counter[str] = Counter()

    # Reporting

    def fail(self, rule: str, detail: str, at: float | None = None) -> None:
        self.counts[rule] += 1
        if at is not None:
            detail += f"; {self.before(at)}"
        self.violations.append(Violation(rule, detail))

    def t(self, at: float) -> str:
        return f"t={at - self.origin:.3f}s"

    def before(self, at: float) -> str:
        """The faults around `at`: the last one begun before it, and one under way."""
        begun = [f for f in self.faults if f.at <= at]
        if not begun:
            return "no fault before it"
        last = begun[-1]
        state = "under way" if last.until >= at else f"over {at - last.until:.3f}s before"
        return f"last fault {last.name} at {self.t(last.at)}, until {self.t(last.until)} ({state})"

    def describe(self, call: Call) -> str:
        outcome = (
            f"{call.status}" if call.answered else f"no answer ({call.error})"
        ) + f" after {call.elapsed:.3f}s"
        return (
            f"{call.kind} {call.request_id} [{self.t(call.started)}..{self.t(call.finished)}] "
            f"{outcome}"
        )

    def stopped_web(self, start: float, end: float) -> float:
        """Seconds the web was stopped (SIGSTOP) between `start` and `end`."""
        return sum(
            max(0.0, min(end, f.until) - max(start, f.at))
            for f in self.faults
            if f.signal == "SIGSTOP" and f.target == "web"
        )

    def allowed(self, call: Call) -> float:
        return self.deadlines.of(call.kind) + self.stopped_web(call.started, call.finished)

    def effect_end(self, call: Call) -> float:
        """Until when the request could still change a number: its answer, or, with no
        answer, its deadline (its tasks expire then)."""
        if call.answered:
            return call.finished
        return call.started + self.allowed(call)

    # Rules

    def answers(self) -> None:
        expected = {ENDED: 201, RESUMED: 201, CHECK: 200, FEED: 200}
        for call in self.calls:
            status = call.status
            if status is None or status == expected[call.kind]:
                continue
            if status in (429, 503):
                if not call.retry_after:
                    self.fail("answer", f"{self.describe(call)} without Retry-After", call.started)
            elif status >= 500:
                self.fail("answer", f"server error: {self.describe(call)}", call.started)
            else:
                self.fail("answer", f"unexpected: {self.describe(call)}", call.started)

    def late(self) -> None:
        for call in self.calls:
            if call.error == "timeout":
                self.fail("late", f"client timeout: {self.describe(call)}", call.started)
            elif call.answered and call.elapsed > self.allowed(call):
                self.fail(
                    "late",
                    f"{self.describe(call)}, allowed {self.allowed(call):.3f}s",
                    call.started,
                )

    def feed(self) -> None:
        self._ordered("feed", self.final.feed, "final feed")

    def _ordered(self, rule: str, events: Sequence[Event], what: str) -> None:
        seen: set[str] = set()
        previous: EventId | None = None
        for event in events:
            current = event_id(event)
            if str(current) in seen:
                self.counts["duplicates"] += 1
                self.fail(rule, f"{what}: event {current} twice")
            elif previous is not None and current <= previous:
                self.fail(rule, f"{what}: event {current} after {previous}")
            seen.add(str(current))
            previous = current

    def tail(self) -> None:
        """The events a client saw following the feed, page after page, are the final
        feed's first ones: none lost, none twice, none that vanished."""
        tail = [e for c in self.calls if c.kind == FEED and c.status == 200 for e in c.events]
        self._ordered("feed", tail, "followed feed")
        final = list(self.final.feed)
        for position, event in enumerate(tail):
            if position >= len(final) or dict(final[position]) != dict(event):
                found = final[position] if position < len(final) else "nothing"
                self.fail(
                    "feed",
                    f"followed feed's event {position} was {dict(event)}, the final feed has "
                    f"{found}",
                )
                return

    def histories(self) -> None:
        numbers = set(self.by_number) | set(self.final.histories)
        for number in sorted(numbers):
            feed = [dict(e) for e in self.by_number.get(number, [])]
            history = [dict(e) for e in self.final.histories.get(number, [])]
            if history != feed:
                self.fail(
                    "history",
                    f"{number}: history {_ids(history)} but the feed has {_ids(feed)}",
                )
            kinds = [e["type"] for e in history]
            alternating = [ENDED if i % 2 == 0 else RESUMED for i in range(len(kinds))]
            if kinds != alternating:
                self.fail("history", f"{number}: events {kinds} do not alternate from ended")

    def effects(self) -> None:
        for event in self.final.feed:
            request_id, number = str(event["requestId"]), str(event["phoneNumber"])
            call = self.by_request.get(request_id)
            at = event_id(event).ms / 1000
            if call is None or call.kind not in CHANGES:
                self.fail("effect", f"event {event['id']} of no change request: {dict(event)}")
                continue
            asked = (call.kind, call.key_id, call.reason)
            made = (event["type"], event["keyId"], event.get("reason"))
            if number not in call.numbers or made != asked:
                self.fail("effect", f"event {dict(event)} is not what {self.describe(call)} asked")
            if call.answered and call.status != 201:
                self.fail(
                    "effect",
                    f"event {event['id']} ({number}) of a request answered {call.status}: "
                    f"{self.describe(call)}",
                    call.started,
                )
            lo_ms, _ = _ms_range(call)
            if event_id(event).ms < lo_ms or at > self.effect_end(call) + SLACK_MS / 1000:
                self.fail(
                    "effect",
                    f"event {event['id']} ({number}, {event['type']}) at {self.t(at)}, outside "
                    f"its request {self.describe(call)}",
                    at,
                )

    def acknowledged(self) -> None:
        for call in self.changes:
            for number in call.success:
                self.counts["acknowledged"] += 1
                self._holds(call, number)
                self._recorded(call, number)

    def _holds(self, call: Call, number: str) -> None:
        ended = self.final.marks.get(number) is not None
        if ended == (call.kind == ENDED):
            return
        # Another change of the number may have come after this one: its request not
        # answered before this one started, and it took effect.
        for other in self.changes:
            if (
                other.kind != call.kind
                and number in other.numbers
                and (number in other.success or (other.request_id, number) in self.made)
                and self.effect_end(other) >= call.started
            ):
                return
        self.fail(
            "lost",
            f"{number}: {self.describe(call)} acknowledged it {call.kind}, the end state is "
            f"{'ended' if ended else 'not ended'}, and no change after it undid it "
            f"(its history: {_ids(self.by_number.get(number, []))})",
            call.started,
        )

    def _recorded(self, call: Call, number: str) -> None:
        if (call.request_id, number) in self.made:
            return
        # No event: a repeat, so the number was already so while it was in flight.
        lo_ms, hi_ms = _ms_range(call)
        states = self.timelines.get(number, _Timeline([])).during(lo_ms, hi_ms)
        if any((state is not None) == (call.kind == ENDED) for state in states):
            return
        self.fail(
            "missing event",
            f"{number}: {self.describe(call)} acknowledged it {call.kind} with no event, and "
            f"it was not {call.kind} meanwhile (its history: "
            f"{_ids(self.by_number.get(number, []))})",
            call.started,
        )

    def states(self) -> None:
        numbers = set(self.final.marks) | set(self.by_number)
        for number in sorted(numbers):
            expected = self.timelines.get(number, _Timeline([])).last
            marked = self.final.marks.get(number)
            if marked != expected:
                self.fail(
                    "state", f"{number}: the final check says {marked}, its events {expected}"
                )
            if number in self.final.lookups and self.final.lookups[number] != marked:
                self.fail(
                    "state",
                    f"{number}: the final lookup says {self.final.lookups[number]}, the check "
                    f"{marked}",
                )
        for call in self.calls:
            if call.kind != CHECK or call.status != 200:
                continue
            lo_ms, hi_ms = _ms_range(call)
            for number, seen in call.marks.items():
                states = self.timelines.get(number, _Timeline([])).during(lo_ms, hi_ms)
                if seen not in states:
                    self.fail(
                        "state",
                        f"{number}: {self.describe(call)} saw {seen}, but meanwhile it was "
                        f"only {sorted(states, key=str)}",
                        call.started,
                    )

    def webhook(self) -> None:
        delivered: dict[str, Event] = {}
        for data in self.final.deliveries:
            delivered.setdefault(str(data["id"]), data)
        self.counts["redeliveries"] = len(self.final.deliveries) - len(delivered)
        in_feed = {str(e["id"]): e for e in self.final.feed}
        for key, event in in_feed.items():
            if key not in delivered:
                self.fail("webhook", f"event {key} ({event['phoneNumber']}) never delivered")
            elif dict(delivered[key]) != dict(event):
                self.fail("webhook", f"event {key} delivered as {dict(delivered[key])}")
        for key in delivered.keys() - in_feed.keys():
            self.fail("webhook", f"delivered event {key} is not in the feed")

    def figures(self) -> dict[str, int | float | str]:
        kinds = Counter(c.kind for c in self.calls)
        statuses = Counter(str(c.status) for c in self.calls if c.answered)
        faults = Counter(f.name for f in self.faults)
        latency = {
            kind: max((c.elapsed for c in self.calls if c.answered and c.kind in kinds_), default=0)
            for kind, kinds_ in (("change", CHANGES), ("read", (CHECK, FEED)))
        }
        figures: dict[str, int | float | str] = {
            "requests": len(self.calls),
            "requests by kind": _counted(kinds),
            "answers by status": _counted(statuses),
            "connection errors (no answer)": sum(c.error == "connection" for c in self.calls),
            "faults": len(self.faults),
            "faults by kind": _counted(faults),
            "numbers acknowledged": self.counts["acknowledged"],
            "numbers failed": sum(len(c.failure) for c in self.changes),
            "events in the feed": len(self.final.feed),
            "events delivered": len({str(d["id"]) for d in self.final.deliveries}),
            "webhook redeliveries": self.counts["redeliveries"],
            "slowest change answer s": round(latency["change"], 3),
            "slowest read answer s": round(latency["read"], 3),
            "lost": self.counts["lost"],
            "late answers": self.counts["late"],
            "feed duplicates": self.counts["duplicates"],
            "violations": len(self.violations),
        }
        return figures


def _counted(counter: Counter[str]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counter.items())) or "none"


def _ids(events: Iterable[Event]) -> list[str]:
    return [f"{e['id']} {e['type']} by {e['requestId']}" for e in events]
