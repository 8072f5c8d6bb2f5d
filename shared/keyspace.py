"""The store's keyspace (REDIS_URL): the names of what must last.

Keys:
  ec:key:<sha256 of the API key>   hash: id, company, campaign, label, created_at[, revoked_at]
  ec:key-ids                       hash: key id -> sha256, for listing and revoking by id
  ec:ended:<company>:<campaign>    hash: E.164 number -> time it was first ended
  ec:metrics                       hash: metric sample -> its sum over all processes

What lives only for seconds (queue, results, heartbeats, rate-limit counters) is on
the broker (shared.broker), which may be another server, without fsync.

Company and campaign are percent-encoded in key names, so a ':' in a name cannot make
two scopes collide. One hash per campaign keeps small campaigns compact and lets an
operator count or export a campaign's marks with one key.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

from shared.apikeys import Scope
from shared.webhooks import feed_stream_key

KEY_IDS = "ec:key-ids"
# Feed name (`feed_name`) -> the id of the last event trimmed from it (`<entry>-<index>`).
TRIMMED = "ec:events-trimmed"
# Feed names of every campaign with a feed, for the sweep that trims idle ones.
FEEDS = "ec:feeds"
# Held for a sweep's period by the process that swept (MarkWrites.trim_feeds).
SWEPT = "ec:feeds-swept"


def key_record(secret_digest: str) -> str:
    return f"ec:key:{secret_digest}"


def feed_name(scope: Scope) -> str:
    return f"{quote(scope.company, safe='')}:{quote(scope.campaign, safe='')}"


def scope_of_feed(name: str) -> Scope:
    company, _, campaign = name.partition(":")
    return Scope(unquote(company), unquote(campaign))


def ended_key(scope: Scope) -> str:
    """The campaign's hash: number -> its history, state first (shared.events)."""
    return f"ec:ended:{feed_name(scope)}"


def events_key(scope: Scope) -> str:
    """The campaign's feed: a stream, an entry per request's changes in a batch."""
    return feed_stream_key(feed_name(scope))
