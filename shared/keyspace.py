"""The store's keyspace (REDIS_URL): the names of what must last.

Keys:
  ec:key:<sha256 of the API key>   hash: id, company, campaign, label, created_at[, revoked_at]
  ec:key-ids                       hash: key id -> sha256, for listing and revoking by id
  ec:ended:{<feed>}                hash: E.164 number -> its history, state first
  ec:events:{<feed>}               stream: the campaign's feed, an entry per request's
                                   changes in a worker batch
  ec:feed:{<feed>}                 hash: trimmed (the id of the last event trimmed from
                                   the feed, `<entry>-<index>`), added (events ever added)
  ec:metrics                       hash: metric sample -> its sum over all processes
  ec:feeds-swept                   string: held for a sweep's period by the process that
                                   swept (MarkWrites.trim_feeds)
  ec:keyspace                      string: the keyspace's version (shared.migrations)
with <feed> the campaign's feed name (feed_name). Webhooks and their deliveries:
shared.webhooks and shared.deliveries.

On a Valkey (Redis) Cluster (ENDCONTACT_REDIS_CLUSTER) a script may touch the keys of
one hash slot only, and a key's slot is that of its hash tag, the text between its
first '{' and the '}' after it. So every key a campaign's write touches (its marks,
feed and feed record) carries the campaign's feed name as its tag: each write is one
script on one node, atomic as on one server, and campaigns spread over the primaries
by their names. Every other key stands alone (an API key's record, the key ids, the
metrics: each one command on one key) or, for webhooks and deliveries, which scripts
take together whatever the campaign, shares the tag {hooks} (shared.webhooks): they
live on one primary, and are few beside the marks.

What lives only for seconds (queue, results, heartbeats, rate-limit counters) is on
the broker (shared.broker), which may be another server, without fsync.

Company and campaign are percent-encoded in key names, so a ':' in a name cannot make
two scopes collide, nor a '{' or '}' end a tag. One hash per campaign keeps small
campaigns compact and lets an operator count or export a campaign's marks with one key.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

from shared.apikeys import Scope
from shared.webhooks import feed_stream_key

KEY_IDS = "ec:key-ids"
SWEPT = "ec:feeds-swept"
# Fields of a campaign's feed record (feed_record_key).
TRIMMED = "trimmed"
ADDED = "added"
# What a sweep looks for on each primary: every campaign's feed (events_key).
EVENTS_PATTERN = "ec:events:{*}"


def key_record(secret_digest: str) -> str:
    return f"ec:key:{secret_digest}"


def feed_name(scope: Scope) -> str:
    return f"{quote(scope.company, safe='')}:{quote(scope.campaign, safe='')}"


def scope_of_feed(name: str) -> Scope:
    company, _, campaign = name.partition(":")
    return Scope(unquote(company), unquote(campaign))


def tag(feed: str) -> str:
    """The hash tag of a campaign's keys, by its feed name."""
    return "{" + feed + "}"


def ended_key(scope: Scope) -> str:
    """The campaign's hash: number -> its history, state first (shared.events)."""
    return f"ec:ended:{tag(feed_name(scope))}"


def events_key(scope: Scope) -> str:
    """The campaign's feed: a stream, an entry per request's changes in a batch."""
    return feed_stream_key(feed_name(scope))


def feed_record_key(feed: str) -> str:
    """The campaign's feed record (TRIMMED, ADDED), by its feed name."""
    return f"ec:feed:{tag(feed)}"


def feed_of_events_key(key: str) -> str:
    """The feed name in an events_key (as a sweep finds them)."""
    return key.removeprefix("ec:events:").removeprefix("{").removesuffix("}")
