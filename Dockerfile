# selfcode's default sandbox image. Built by `selfcode sandbox build` (selfcode/sandbox/image.py),
# never by hand: the build context is this file plus `wheelhouse/`, a directory of wheels that
# selfcode resolved ON THE HOST for the target repository (its pyproject.toml dependencies,
# requirements*.txt and pytest) together with `wheelhouse/requirements.txt`.
#
# Nothing is fetched from a package index inside the build (`pip install --no-index`). With an
# offline base (sandbox/bootstrap-base.sh, which already has git and valgrind) the build needs no
# network at all; python:3.12-slim needs Debian's mirror once for git and valgrind.
# No code of the target repository goes into the image: trees are copied into a tmpfs per run.
ARG BASE=python:3.12-slim

# Labels: `selfcode.sandbox` is on every layer of every stage (set first, so a failed build's
# leftovers carry it too, and constant, so the layer cache holds). `selfcode.build` (one build's
# id) and `selfcode.state` (the state dir of the repository it is for) end the `deps` stage and
# the final image: the build removes exactly the untagged `deps` image it leaves behind, and
# `selfcode sandbox prune` tells a repository's images from another's (sandbox/image.py,
# sandbox/prune.py). Images without selfcode's labels are never removed.
ARG SELFCODE_BUILD=""
ARG SELFCODE_STATE=""

# --- system: git, valgrind, the sandbox user --------------------------------------------------
FROM ${BASE} AS system
USER root
LABEL selfcode.sandbox="1"
# git and valgrind are installed only when the base lacks them (then Debian's mirror is needed).
# The root filesystem is read-only in the sandbox, so the standard library is compiled here (some
# bases ship without .pyc files), or every Python start would compile it again in memory.
RUN set -eu; \
    missing=""; \
    command -v git >/dev/null 2>&1 || missing="$missing git"; \
    command -v valgrind >/dev/null 2>&1 || missing="$missing valgrind"; \
    command -v timeout >/dev/null 2>&1 || missing="$missing coreutils"; \
    if [ -n "$missing" ]; then \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    command -v python3 >/dev/null 2>&1 || { echo "the base image has no python3" >&2; exit 1; }; \
    getent group 1000 >/dev/null || echo 'sandbox:x:1000:' >> /etc/group; \
    getent passwd 1000 >/dev/null \
        || echo 'sandbox:x:1000:1000:selfcode sandbox:/home/sandbox:/bin/sh' >> /etc/passwd; \
    mkdir -p /home/sandbox /work /in /opt/selfcode; \
    chown 1000:1000 /home/sandbox /work; \
    chmod 0755 /home/sandbox /work /in /opt/selfcode; \
    python3 -m compileall -q -j 0 "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')" \
        >/dev/null 2>&1 || true

# --- deps: a virtual environment filled from the host-built wheelhouse, offline ---------------
# requirements.txt pins every wheel the host resolved (the target's build backends included);
# --no-deps because the target's own distribution is deliberately missing: the sandbox
# installs the target from its tree (sandbox/selfcode_install.py), never from the index.
FROM system AS deps
COPY wheelhouse /wheelhouse
RUN set -eu; \
    python3 -m venv /opt/venv; \
    PIP_DISABLE_PIP_VERSION_CHECK=1 /opt/venv/bin/pip install --no-cache-dir --no-index \
        --no-deps --find-links /wheelhouse -r /wheelhouse/requirements.txt; \
    /opt/venv/bin/python -c 'import pytest'
# After the install: a new build id must not cost its cache.
ARG SELFCODE_BUILD
ARG SELFCODE_STATE
LABEL selfcode.build="${SELFCODE_BUILD}" selfcode.state="${SELFCODE_STATE}"

# --- final: system + the venv, no wheelhouse, no repository code ------------------------------
FROM system
COPY --from=deps /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    HOME=/home/sandbox \
    PYTHONDONTWRITEBYTECODE=1
ARG SELFCODE_BUILD
ARG SELFCODE_STATE
LABEL org.opencontainers.image.title="selfcode sandbox" \
      selfcode.sandbox="1" \
      selfcode.build="${SELFCODE_BUILD}" \
      selfcode.state="${SELFCODE_STATE}"
USER 1000:1000
WORKDIR /work
CMD ["sleep", "infinity"]
