"""The dispatcher: webhook deliveries (shared.deliveries), sent by the worker.

Each worker process starts one of these as a process of its own (`python -m
worker.deliveries`, worker/app.py), at a lower CPU priority and with its own GIL and
Redis clients, so no new command is needed and end-contact keeps the CPU it needs;
it stops with its worker (and dies with it, SIGKILL included). In it:

- the follow loop (follower.py) keeps leases (leases.py) on a fair share of the
  webhooks (shared.deliveries) and, for each it follows (followed.py), reads the
  campaign's feed after what it has read, hands the events to runners, and now and
  then writes in one script per webhook what finished: the attempt log, the retries of
  failed attempts, and the cursor past the feed entries whose events all finished. A
  first attempt thus costs the store no write of its own (a write there waits for the
  fsync end-contact waits for too).
- runners (runners.py: threads, at most WINDOW per webhook and CAMPAIGN_RUNNERS per
  campaign) send a webhook's events one after the other, so a receiver that hangs
  holds its own runners and no other campaign's, and the end-contact path (Celery's
  consumer, in another process) never waits for one.
  While that worker is busy, they start attempts only in short windows
  (worker/yielding.py).
- the claim loop (retries.py) claims the retries that came due (lua/claim.lua: a
  claimed delivery's score moves to the end of its lease, so no other worker sends it
  meanwhile; a dead worker's lease runs out and someone sends it again, with the same
  webhook-id), a webhook at a time (at most WINDOW per webhook and CAMPAIGN_RETRIES per
  campaign in flight), sends them in a pool of its own and records each outcome.

Both loops make their attempts as attempt.py does; dispatcher.py wires the parts,
process.py runs them in their process, scripts.py joins the Lua scripts (lua/).

Due times, leases and signs of life are on the store's clock, read by the scripts that
write and compare them (shared.clock): dispatchers whose clocks differ still agree on
when a retry is due and whose lease has run out. An attempt is signed at the store's
time too, as this process reads it at each tend (a rotated secret's overlap ends on
that clock).
"""

from __future__ import annotations

import logging

# One logger for all the parts: log lines keep the name they had as one module.
log = logging.getLogger(__name__)

# How long a stopping worker waits for attempts in flight, to record their outcome
# (those it did not keep their leases, LEASE_MARGIN past their deadline).
STOP_GRACE = 3.0
# Redis away: how long to wait before trying again.
BACKOFF = 1.0
