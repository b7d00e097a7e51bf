#!/usr/bin/env bash
# A real two-node Ray cluster on loopback, for selfcode's tests and CI (issue 16).
#
#   ray-test-cluster.sh start NAME           start it (or find it running); print its address
#   ray-test-cluster.sh status NAME          its nodes as Ray sees them; exit 1 unless two are alive
#   ray-test-cluster.sh kill-worker NAME     SIGKILL the second node (its raylet, agents, workers)
#   ray-test-cluster.sh restart-worker NAME  start the second node again
#   ray-test-cluster.sh stop NAME            kill every process of the cluster, remove the netns
#
# Why a network namespace: started plainly, Ray binds to the machine's interface address. In a
# namespace NAME with only `lo` up, Ray can only use 127.0.0.1, and the Docker engine is still
# reached through its unix socket. Every process of the cluster lives in that namespace, so
# `ip netns pids NAME` is exactly the set this script may kill: never `ray stop`, which kills
# every Ray process of the machine. Each node's processes carry SELFCODE_RAY_NODE=NAME/head or
# NAME/worker in their environment (inherited by the raylet's workers), which tells the nodes
# apart inside the namespace.
#
# Needs root (ip netns) and iproute2. Ray runs on SELFCODE_RAY_PYTHON (default: the repository's
# .venv/bin/python, else python3), which must have ray (`pip install -e '.[test,ray]'`); the
# remote tasks run on that Python too. State (each node's --temp-dir, logs, recorded pids) lives
# in $SELFCODE_RAY_STATE/NAME (default /tmp/sc-ray/NAME; short, as Ray's unix socket paths
# must stay under 108 characters). Every command is idempotent and safe after a crash.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PORT=6379  # the head's GCS port: the namespace is the cluster's own, so nothing else holds it
OBJECT_STORE_BYTES="${SELFCODE_RAY_OBJECT_STORE_BYTES:-200000000}"
STATE_ROOT="${SELFCODE_RAY_STATE:-/tmp/sc-ray}"
if [ -n "${SELFCODE_RAY_PYTHON:-}" ]; then
    PYTHON="$SELFCODE_RAY_PYTHON"
elif [ -x "$ROOT/.venv/bin/python" ]; then
    PYTHON="$ROOT/.venv/bin/python"
else
    PYTHON="python3"
fi

die() { echo "ray-test-cluster: $*" >&2; exit 2; }

usage() { die "usage: $0 start|status|kill-worker|restart-worker|stop NAME"; }

[ $# -eq 2 ] || usage
COMMAND="$1"
NAME="$2"
# Short and plain: it names the namespace and a directory, and ends up in socket paths.
[[ "$NAME" =~ ^[a-z0-9][a-z0-9-]{0,15}$ ]] || die "NAME must be 1-16 of [a-z0-9-], got '$NAME'"
STATE="$STATE_ROOT/$NAME"
ADDRESS="127.0.0.1:$PORT"

netns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$NAME"; }

# The pids of the namespace's processes whose environment says they belong to node $1
# (head|worker); every pid of the namespace when $1 is empty.
node_pids() {
    local role="${1:-}" pid
    netns_exists || return 0
    for pid in $(ip netns pids "$NAME"); do
        if [ -z "$role" ] || tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null \
                | grep -qx "SELFCODE_RAY_NODE=$NAME/$role"; then
            echo "$pid"
        fi
    done
}

# Record "pid start-time command" of node $1's processes in $STATE/$1.pids: what was started,
# for whoever reads a failed run (the start time tells a pid from a later one reusing it).
record() {
    local role="$1" pid
    for pid in $(node_pids "$role"); do
        echo "$pid $(awk '{print $22}' "/proc/$pid/stat" 2>/dev/null) $(tr '\0' ' ' \
            <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-120)"
    done >"$STATE/$role.pids"
}

# SIGKILL the processes node_pids "$1" lists, until none is left (a raylet may be starting one).
kill_node() {
    local role="${1:-}" pids tries=0
    while pids="$(node_pids "$role")" && [ -n "$pids" ]; do
        # shellcheck disable=SC2086
        kill -9 $pids 2>/dev/null || true
        tries=$((tries + 1))
        [ "$tries" -lt 50 ] || die "processes of $NAME ${role:-cluster} survive SIGKILL: $pids"
        sleep 0.1
    done
}

# The cluster's processes start from a clean environment: whatever the caller holds (a model
# key, the user's settings) never reaches a node; a task gets only what its driver ships.
in_netns() {
    ip netns exec "$NAME" env -i PATH="$PATH" HOME="${HOME:-/root}" LANG=C.UTF-8 \
        ${DOCKER_HOST:+DOCKER_HOST="$DOCKER_HOST"} RAY_USAGE_STATS_ENABLED=0 "$@"
}

# ray start for node $1 (head|worker), its output in $STATE/$1.log.
start_node() {
    local role="$1" flags
    if [ "$role" = head ]; then
        flags=(--head --port "$PORT" --include-dashboard=false
               --min-worker-port 10100 --max-worker-port 10999 --dashboard-agent-listen-port 52365)
    else
        flags=(--address "$ADDRESS"
               --min-worker-port 11100 --max-worker-port 11999 --dashboard-agent-listen-port 52366)
    fi
    mkdir -p "$STATE/$role"
    # The head's GCS declares a node dead after 5 missed health checks; one a second (Ray's
    # default is every 3 s with a 10 s timeout: ~15 s) so a killed node is reported in ~6 s.
    if ! in_netns SELFCODE_RAY_NODE="$NAME/$role" RAY_health_check_period_ms=1000 \
            RAY_health_check_timeout_ms=2000 RAY_health_check_failure_threshold=5 \
            "$PYTHON" -m ray.scripts.scripts start "${flags[@]}" \
            --node-ip-address 127.0.0.1 --num-cpus 1 --resources '{"selfcode_timing": 1}' \
            --object-store-memory "$OBJECT_STORE_BYTES" --temp-dir "$STATE/$role" \
            --disable-usage-stats >"$STATE/$role.log" 2>&1; then
        tail -n 20 "$STATE/$role.log" >&2
        abandon "ray start of the $role node failed"
    fi
    record "$role"
}

# A driver in the namespace: prints one line per node ("<id> alive|dead head|worker") and exits
# 0 when exactly `$1` alive nodes are registered (waiting up to $2 seconds for it).
NODES_DRIVER='
import sys, time, ray
want, deadline = int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
while True:
    nodes = ray.nodes()
    alive = [n for n in nodes if n["Alive"]]
    if len(alive) == want or time.monotonic() > deadline:
        break
    time.sleep(0.5)
for n in nodes:
    role = "head" if "node:__internal_head__" in n["Resources"] else "worker"
    print(n["NodeID"], "alive" if n["Alive"] else "dead", role)
sys.exit(0 if len(alive) == want else 1)
'

# (ray.init waits for a GCS that is not there: the driver gets the wait plus 30 s.)
wait_nodes() { in_netns timeout --kill-after=5 "$(($2 + 30))" "$PYTHON" -c "$NODES_DRIVER" \
    "$ADDRESS" "$1" "$2" 2>>"$STATE/driver.log"; }

# Alive: both nodes' raylets run in the namespace.
raylet_alive() { for pid in $(node_pids "$1"); do
    grep -q raylet/raylet "/proc/$pid/cmdline" 2>/dev/null && return 0; done; return 1; }

do_stop() {
    if netns_exists && [ ! -d "$STATE" ]; then
        die "a network namespace $NAME exists that this script did not create; choose another NAME"
    fi
    kill_node ""
    if netns_exists; then
        ip netns del "$NAME"
    fi
    rm -rf "$STATE"
}

# A start that fails takes down what it started: a caller that never got an address has
# nothing to stop.
abandon() {
    do_stop
    die "$1; $NAME is stopped again"
}

do_start() {
    command -v ip >/dev/null || die "ip (iproute2) is not installed"
    "$PYTHON" -c 'import ray' 2>/dev/null || die "$PYTHON has no ray; pip install -e '.[test,ray]'"
    if netns_exists && [ -f "$STATE/address" ] && raylet_alive head && raylet_alive worker; then
        cat "$STATE/address"
        return
    fi
    do_stop  # what a crashed run left behind
    mkdir -p "$STATE"
    ip netns add "$NAME"
    ip netns exec "$NAME" ip link set lo up
    start_node head
    start_node worker
    wait_nodes 2 60 >/dev/null || { tail -n 20 "$STATE/driver.log" >&2
                                    abandon "the two nodes did not both register"; }
    echo "$ADDRESS" >"$STATE/address"
    echo "$ADDRESS"
}

case "$COMMAND" in
    start) do_start ;;
    stop) do_stop ;;
    status)
        { netns_exists && [ -f "$STATE/address" ]; } || { echo "$NAME: not running"; exit 1; }
        echo "address $ADDRESS"
        wait_nodes 2 0 ;;
    kill-worker) kill_node worker ;;
    restart-worker)
        [ -f "$STATE/address" ] || die "$NAME is not running; start it first"
        raylet_alive worker || { kill_node worker; start_node worker; } ;;
    *) usage ;;
esac
