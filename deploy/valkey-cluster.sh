#!/bin/sh
# The Valkey Cluster of compose.cluster.yaml, in the valkey image's own sh and tools:
#
#   server [OPTION...]  a node: valkey-server with the cluster options and the options given
#   health              a node's healthcheck: true when it sees the cluster ok
#   init NODE...        once per `up`: create the cluster of these nodes (the first half
#                       primaries, a replica each), or, if it exists, only bring it
#                       together again; exits 0 when every node says cluster_state:ok
#                       and reaches the others
#
# The password is REDIS_PASSWORD's; valkey-cli takes it from REDISCLI_AUTH, not from -a,
# which any `ps` on the host would show.
set -eu

PORT=6379
export REDISCLI_AUTH="${REDIS_PASSWORD:?set REDIS_PASSWORD}"

cli() {
    host=$1
    shift
    valkey-cli --no-auth-warning -h "$host" -p "$PORT" "$@"
}

address() { getent hosts "$1" | awk '{ print $1; exit }'; }

# Nodes remember each other by the IP address they had (nodes.conf). Docker gives a
# container another address when it is made anew (`down` then `up`) and may on a
# restart: a node whose peers all moved at once would call old addresses forever and
# the cluster would stay down. Every node also announces its service name (its
# hostname), so a peer whose name now resolves elsewhere is met again at its new address
# (the handshake finds its known node id and moves it there; nothing else changes).
# A peer that is stopped has no address in Docker's DNS and is left alone.
rejoin() {
    cli "$1" CLUSTER NODES | awk '$3 !~ /myself/ { print $2 }' | while IFS= read -r endpoint; do
        # ip:port@cport,hostname
        name=${endpoint#*,}
        [ "$name" != "$endpoint" ] && [ -n "$name" ] || continue
        now=$(address "$name") || continue
        [ -n "$now" ] && [ "$now" != "${endpoint%%:*}" ] || continue
        echo "valkey-cluster: $1 meets $name at its new address $now (was ${endpoint%%:*})"
        cli "$1" CLUSTER MEET "$now" "$PORT" >/dev/null
    done
}

info() { cli "$1" CLUSTER INFO | tr -d '\r' | sed -n "s/^$2://p"; }

# Polls until "$@" succeeds, at most $DEADLINE seconds; false if it never does.
DEADLINE=${DEADLINE:-60}
within() {
    waited=0
    until "$@"; do
        [ "$waited" -lt "$DEADLINE" ] || return 1
        sleep 1
        waited=$((waited + 1))
    done
}

answers() { [ "$(cli "$1" PING 2>/dev/null)" = PONG ]; }

# A node that just started says cluster_state:ok from its nodes.conf before it has
# reached anyone; settled is ok and linked to every node it knows, none failing.
settled() {
    [ "$(info "$1" cluster_state 2>/dev/null)" = ok ] || return 1
    cli "$1" CLUSTER NODES | awk '$3 ~ /fail|noaddr|handshake/ || $8 != "connected" { bad = 1 }
        END { exit bad }'
}

all_settled() {
    for node in "$@"; do settled "$node" || return 1; done
}

case "${1:-}" in
server)
    shift
    # Replicas authenticate to their primary with the same password. The node
    # announces its name so that clients are redirected to names (MOVED redis-2:6379),
    # which Docker's DNS keeps right when addresses change.
    exec valkey-server --port "$PORT" --dir /data \
        --requirepass "$REDIS_PASSWORD" --masterauth "$REDIS_PASSWORD" \
        --cluster-enabled yes --cluster-config-file nodes.conf \
        --cluster-announce-hostname "$(hostname)" --cluster-preferred-endpoint-type hostname \
        "$@"
    ;;
health)
    rejoin "$(hostname)" || true
    [ "$(info 127.0.0.1 cluster_state)" = ok ]
    ;;
init)
    shift
    [ $# -ge 3 ] || { echo "valkey-cluster: init needs the nodes' names" >&2; exit 2; }
    for node in "$@"; do
        within answers "$node" || { echo "valkey-cluster: $node does not answer" >&2; exit 1; }
    done
    formed=""
    for node in "$@"; do
        if [ "$(info "$node" cluster_known_nodes)" -gt 1 ] ||
            [ "$(info "$node" cluster_slots_assigned)" -gt 0 ]; then
            formed="$node"
            break
        fi
    done
    if [ -n "$formed" ]; then
        # Made by an earlier `up` (the volumes were kept): nothing to create. A node
        # that was not part of it is left alone (add it with --cluster add-node).
        echo "valkey-cluster: the cluster exists ($formed knows it); not creating it"
        for node in "$@"; do rejoin "$node"; done
    else
        endpoints=""
        for node in "$@"; do endpoints="$endpoints $(address "$node"):$PORT"; done
        # shellcheck disable=SC2086 # one word per node
        valkey-cli --no-auth-warning --cluster create $endpoints --cluster-replicas 1 --cluster-yes
    fi
    if ! within all_settled "$@"; then
        echo "valkey-cluster: not every node reaches the others with cluster_state:ok" \
            "after ${DEADLINE} s;" \
            "valkey-cli --cluster check $(address "$1"):$PORT says why" >&2
        exit 1
    fi
    echo "valkey-cluster: cluster_state:ok on $*"
    ;;
*)
    echo "usage: valkey-cluster.sh server [OPTION...] | health | init NODE..." >&2
    exit 2
    ;;
esac
