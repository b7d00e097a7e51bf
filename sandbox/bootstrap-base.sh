#!/usr/bin/env bash
# Builds a base image for selfcode's docker sandbox WITHOUT any container registry.
#
#   sandbox/bootstrap-base.sh [IMAGE_NAME]
#   export SELFCODE_BASE_IMAGE="$(sandbox/bootstrap-base.sh | tail -n 1)"
#
# debootstrap builds a minimal Debian root filesystem from the distribution's package mirror
# and `docker import` turns it into an image holding python3, venv, pip, pytest, git, valgrind
# and coreutils. Idempotent: when the image already exists nothing is built. Progress goes to
# stderr; the image's name is the LAST line of stdout.
#
# Environment:
#   SELFCODE_BOOTSTRAP_IMAGE   image name (default selfcode-base:bookworm; the argument wins)
#   SELFCODE_BOOTSTRAP_SUITE   Debian suite (default bookworm)
#   SELFCODE_BOOTSTRAP_MIRROR  package mirror (default http://deb.debian.org/debian)
#   SELFCODE_BOOTSTRAP_FORCE=1 rebuild even when the image exists
# Needs root (debootstrap), debootstrap and a running Docker engine.
set -euo pipefail

IMAGE=${1:-${SELFCODE_BOOTSTRAP_IMAGE:-selfcode-base:bookworm}}
SUITE=${SELFCODE_BOOTSTRAP_SUITE:-bookworm}
MIRROR=${SELFCODE_BOOTSTRAP_MIRROR:-http://deb.debian.org/debian}
PACKAGES=python3,python3-venv,python3-pip,python3-pytest,git,valgrind,coreutils,procps

say() { printf 'bootstrap-base: %s\n' "$*" >&2; }
die() {
    say "ERROR: $*"
    exit 1
}

command -v docker >/dev/null 2>&1 || die "the docker client is missing; run scripts/provision-docker.sh first."
docker info >/dev/null 2>&1 || die "the Docker engine does not answer; run scripts/provision-docker.sh first."

if [ "${SELFCODE_BOOTSTRAP_FORCE:-0}" != "1" ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    say "$IMAGE already exists; nothing to do"
    echo "$IMAGE"
    exit 0
fi

command -v debootstrap >/dev/null 2>&1 \
    || die "debootstrap is missing; install it (apt-get install debootstrap) or run scripts/provision-docker.sh."
[ "$(id -u)" -eq 0 ] || die "debootstrap needs root; run this script as root."

ROOTFS=$(mktemp -d "${TMPDIR:-/tmp}/selfcode-rootfs.XXXXXX")
cleanup() { rm -rf --one-file-system "$ROOTFS"; }
trap cleanup EXIT

say "debootstrap $SUITE into $ROOTFS (packages: $PACKAGES); this takes a minute or two"
start=$SECONDS
if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" >&2; then
    tail -n 30 "$ROOTFS/debootstrap/debootstrap.log" >&2 2>/dev/null || true
    die "debootstrap failed; check the mirror $MIRROR (see the log above)."
fi

# Trim what a sandbox never needs: package lists, caches, docs.
chroot "$ROOTFS" apt-get clean >&2 || true
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
    "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
    "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/*
# Quick sanity check before importing.
chroot "$ROOTFS" python3 -c 'import venv, ensurepip, pytest' >&2 \
    || die "the root filesystem has no working python3/venv/pytest."

say "importing the root filesystem as $IMAGE"
tar --numeric-owner -C "$ROOTFS" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --message "selfcode offline base ($SUITE, debootstrap minbase)" \
    - "$IMAGE" >&2 || die "docker import failed."

say "built $IMAGE in $((SECONDS - start))s"
echo "$IMAGE"
