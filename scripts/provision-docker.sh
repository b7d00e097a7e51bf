#!/usr/bin/env bash
# Installs and starts a Docker engine for selfcode's docker sandbox (CI and fresh machines).
#
#   sudo scripts/provision-docker.sh
#
# Idempotent and non-interactive: installs docker.io, debootstrap and valgrind from the
# distribution's packages when missing, starts dockerd in the background when `docker info`
# fails (log: $SELFCODE_DOCKERD_LOG, default /tmp/selfcode-dockerd.log), and waits up to
# $SELFCODE_DOCKER_WAIT seconds (default 60) for the engine to answer. Exits non-zero with
# one sentence on stderr when the engine cannot be brought up.
set -euo pipefail

LOG=${SELFCODE_DOCKERD_LOG:-/tmp/selfcode-dockerd.log}
WAIT=${SELFCODE_DOCKER_WAIT:-60}

say() { printf 'provision-docker: %s\n' "$*" >&2; }
die() {
    say "ERROR: $*"
    exit 1
}

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        die "run this script as root (or install sudo): it installs packages and starts dockerd."
    fi
fi

# --- packages -------------------------------------------------------------------------------
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
if [ "${#missing[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 \
        || die "missing ${missing[*]} and apt-get is not available; install them by hand."
    say "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >&2 || die "apt-get update failed; check the package mirror."
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
        || die "apt-get install ${missing[*]} failed; see the output above."
fi
command -v docker >/dev/null 2>&1 || die "the docker client is missing after installing docker.io."

# --- engine ---------------------------------------------------------------------------------
if docker info >/dev/null 2>&1; then
    say "the Docker engine is already running"
    exit 0
fi

if pgrep -x dockerd >/dev/null 2>&1; then
    say "dockerd is running but does not answer yet; waiting"
else
    say "starting dockerd in the background (log: $LOG)"
    # A stale pid file from a killed dockerd stops a new one from starting.
    if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
        $SUDO rm -f /var/run/docker.pid
    fi
    # setsid + nohup: the engine outlives this script and the CI step's shell.
    $SUDO setsid nohup dockerd >>"$LOG" 2>&1 </dev/null &
fi

deadline=$((SECONDS + WAIT))
until docker info >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        say "last lines of $LOG:"
        tail -n 20 "$LOG" >&2 2>/dev/null || true
        die "the Docker engine did not answer within ${WAIT}s; see $LOG."
    fi
    if ! pgrep -x dockerd >/dev/null 2>&1; then
        say "last lines of $LOG:"
        tail -n 20 "$LOG" >&2 2>/dev/null || true
        die "dockerd exited while starting; see $LOG."
    fi
    sleep 1
done
say "the Docker engine is up ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
