# One image for every role of Agent Growth: the command picks it.
#
#   agent-growth api --host 0.0.0.0 --port 8000
#   agent-growth worker --concurrency 4 --metrics-port 9100
#   agent-growth operator --liveness=http://0.0.0.0:8080/healthz
#   agent-growth migrate
#
# BASE_IMAGE is any Debian-like image whose `python3` is CPython 3.11 with the venv module:
# `python:3.11-slim` where a registry is reachable, or the image that scripts/build-image.sh
# builds with debootstrap where none is.
#
# No HEALTHCHECK: Kubernetes probes (see the Helm chart) check each role on its own port.

ARG BASE_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
# Build stage: a virtual environment with the pinned dependencies and the project's wheel.
FROM ${BASE_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python3 -m venv /opt/venv

# Dependencies first, so that a code change does not reinstall them. Every file is checked
# against the hashes in the lock; only wheels are accepted, so no compiler is needed here.
COPY requirements.lock /tmp/requirements.lock
RUN /opt/venv/bin/pip install --no-cache-dir --require-hashes --only-binary=:all: --no-deps \
        -r /tmp/requirements.lock

# The project itself, built into a wheel and installed without dependencies. The build backend
# (setuptools) lives only in pip's throwaway build environment, never in /opt/venv.
# README.m[d]: the glob lets the build pass while the README does not exist yet.
WORKDIR /src
COPY pyproject.toml README.m[d] ./
COPY agent_growth ./agent_growth
RUN /opt/venv/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/wheels . \
    && /opt/venv/bin/pip install --no-cache-dir --no-deps /tmp/wheels/agent_growth-*.whl \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib \
    && /opt/venv/bin/pip uninstall --yes pip

# ---------------------------------------------------------------------------------------------
# Runtime stage: the base image, the virtual environment and the migrations; nothing else.
FROM ${BASE_IMAGE} AS runtime

# A fixed numeric user, so that Kubernetes can verify runAsNonRoot without an /etc/passwd lookup.
ARG APP_UID=10001
# --no-log-init: a high UID would otherwise grow /var/log/lastlog into a large sparse file.
RUN groupadd --gid "${APP_UID}" agent-growth \
    && useradd --uid "${APP_UID}" --gid "${APP_UID}" --no-create-home --no-log-init \
        --home-dir /nonexistent --shell /usr/sbin/nologin agent-growth

COPY --from=build /opt/venv /opt/venv
COPY migrations /app/migrations

# PYTHONDONTWRITEBYTECODE: the chart mounts the root filesystem read-only, and the bytecode was
# compiled in the build stage. HOME and TMPDIR point at /tmp, the one writable mount.
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    AGENT_GROWTH_MIGRATIONS_DIR=/app/migrations

WORKDIR /app
USER ${APP_UID}:${APP_UID}

# api: 8000, worker metrics: 9100, operator liveness: 8080.
EXPOSE 8000 8080 9100

ENTRYPOINT ["agent-growth"]
CMD ["--help"]
