"""Leases: which dispatcher follows a webhook, and how long an attempt may be started
under one (a webhook's, or a claimed retry's)."""

from __future__ import annotations

import math
import random
import time

import redis

from shared import deliveries
from shared.clock import ServerClock, seconds
from shared.deliveries import DISPATCHERS
from shared.webhooks import CURSORS, Cursor, from_record, webhook_key
from worker.deliveries.followed import Follow, Followed
from worker.deliveries.scripts import ALIVE_SCRIPT, RELEASE_SCRIPT, RENEW_SCRIPT, hooks_pipeline
from worker.senders import ATTEMPT_TIMEOUT

# A webhook's lease, and a claimed retry's: another worker's to take after this long.
LEASE_MS = 30_000
# How often leases are renewed and the registry of webhooks read again.
TEND_EVERY = 1.0
# One delivery is never attempted twice at once (issue 19: with attempts longer than
# the lease, one was attempted four times at once). An attempt lasts at most
# ATTEMPT_TIMEOUT, its name's resolution included (the watchdog cuts it then), so it
# starts only while the lease it runs under (the webhook's, or its retry's claim) has
# that plus LEASE_MARGIN left, as this process measures it from before it asked the
# store (a lower bound, whatever the clocks say); and a stopping dispatcher keeps the
# lease of a webhook with attempts in flight until LEASE_MARGIN after their deadline.
# The margin is for the watchdog's cut to land (a thread switch or two, in a process
# of the idle class). What the lease has over that is how long the store may be out of
# reach before this dispatcher stops starting attempts: 18 renewals missed.
LEASE_MARGIN = 2.0
START_WITHIN_LEASE = ATTEMPT_TIMEOUT + LEASE_MARGIN
assert LEASE_MS / 1000 > START_WITHIN_LEASE + TEND_EVERY, "a lease must outlast an attempt"


def may_start(lease_until: float, now: float) -> bool:
    """Whether an attempt may start at `now` under a lease that lasts until
    `lease_until` (both time.monotonic()): one that outlasts it (LEASE_MS)."""
    return lease_until - now >= START_WITHIN_LEASE


class Leases:
    """This dispatcher's leases on the webhooks it follows (`followed`), on `client`:
    renewed at each tend, taken when free, let go of when released or at the end."""

    def __init__(
        self, client: redis.Redis, name: str, followed: Followed, store_clock: ServerClock
    ) -> None:
        self._client = client
        self._name = name
        self._followed = followed
        # Read at each tend, in the round trip it makes anyway.
        self._store_clock = store_clock
        self._alive = client.register_script(ALIVE_SCRIPT)
        self._renew = client.register_script(RENEW_SCRIPT)
        self._release = client.register_script(RELEASE_SCRIPT)

    def tend(self) -> None:
        """Say this dispatcher is alive, renew its leases, and follow its fair share
        of the webhooks: take free ones below it, let go of some above it."""
        followed = self._followed
        with followed.lock:
            owned = list(followed.follows)
        asked = time.monotonic()
        with hooks_pipeline(self._client) as pipe:
            self._alive(keys=[DISPATCHERS], args=[self._name, LEASE_MS], client=pipe)
            pipe.hgetall(CURSORS)
            for hook in owned:
                self._renew(
                    keys=[deliveries.lease_key(hook)], args=[self._name, LEASE_MS], client=pipe
                )
                pipe.hgetall(webhook_key(hook))
            sent = time.time()
            replies = pipe.execute()
        self._store_clock.observe(seconds(replies[0][1]), sent, time.time())
        live, registry = int(replies[0][0]), replies[1]
        with followed.lock:
            for hook, renewed, record in zip(owned, replies[2::2], replies[3::2], strict=True):
                follow = followed.follows.get(hook)
                found = from_record(record)
                if follow is None:
                    continue
                if not renewed or found is None or hook not in registry:
                    followed.drop(follow)  # taken over, deleted or disabled
                else:
                    follow.webhook = found
                    follow.lease_until = asked + LEASE_MS / 1000
            share = deliveries.fair_share(len(registry), live)
            active = [one for one in followed.follows.values() if not one.releasing]
            for follow in active[share:]:
                follow.releasing = True
            wanted = share - len(active)
        if wanted > 0:
            self._take([hook for hook in registry if hook not in owned], wanted)

    def _take(self, candidates: list[str], wanted: int) -> None:
        """Follow up to `wanted` of the candidates that no one follows. The cursor is
        read after the lease is taken: the one who let it go can no longer move it."""
        if not candidates:
            return
        random.shuffle(candidates)
        leases = self._client.mget([deliveries.lease_key(hook) for hook in candidates])
        free = [hook for hook, holder in zip(candidates, leases, strict=True) if holder is None]
        free = free[:wanted]
        if not free:
            return
        asked = time.monotonic()
        with self._client.pipeline(transaction=False) as pipe:
            for hook in free:
                pipe.set(deliveries.lease_key(hook), self._name, nx=True, px=LEASE_MS)
                pipe.hgetall(webhook_key(hook))
                pipe.hget(CURSORS, hook)
            replies = pipe.execute()
        for x, hook in enumerate(free):
            taken, record, value = replies[3 * x : 3 * x + 3]
            found = from_record(record)
            if not taken:
                continue
            if found is None or value is None:
                self.release(hook)
                continue
            cursor = Cursor.parse(value)
            with self._followed.lock:
                self._followed.follows[hook] = Follow(found, cursor, cursor.entry)
                self._followed.follows[hook].lease_until = asked + LEASE_MS / 1000

    def release(self, hook: str) -> None:
        """Let go of the lease on `hook`, if it is still this dispatcher's."""
        self._release(keys=[deliveries.lease_key(hook)], args=[self._name])

    def leave(self) -> None:
        """On the way out: let go of every lease, so that another worker follows at
        once; but keep that of a webhook with attempts still in flight until
        LEASE_MARGIN after their deadline, so that no one makes them again meanwhile."""
        with self._followed.lock:
            owned = [
                (hook, follow.sending, follow.sending_until)
                for hook, follow in self._followed.follows.items()
            ]
        now = time.monotonic()
        with hooks_pipeline(self._client) as pipe:
            for hook, sending, until in owned:
                keys = [deliveries.lease_key(hook)]
                if sending:
                    ms = math.ceil((until + LEASE_MARGIN - now) * 1000)
                    self._renew(keys=keys, args=[self._name, ms], client=pipe)
                else:
                    self._release(keys=keys, args=[self._name], client=pipe)
            pipe.zrem(DISPATCHERS, self._name)
            pipe.execute()
