# rollout-bot's image: `docker build -t rollout-bot .` (docs/operating.md).
# Stage 1 gathers the wheels (every dependency's, as requirements.lock pins them, and the
# bot's); the final stage installs them from that directory alone (no compiler, no network at
# install time) and drops the base image's setuptools and wheel: nothing in it builds packages.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS wheels
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The dependencies, the `charts` extra's too (matplotlib: gate charts in the threads), exactly
# as `make lock` pinned them, each wheel checked against its hashes: two builds of one commit
# ship the same libraries. Wheels only, nothing compiled. This layer changes with the lock alone.
COPY requirements.lock ./
RUN pip wheel --wheel-dir /wheels --require-hashes --only-binary=:all: -r requirements.lock
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
COPY storage ./storage
COPY sandbox ./sandbox
RUN pip wheel --wheel-dir /wheels --no-deps .

FROM ${PYTHON_IMAGE}
# The commit `--version`, rollout_bot_build_info and the start-up line show:
# docker build --build-arg ROLLOUT_BOT_COMMIT=$(git rev-parse --short HEAD) .
ARG ROLLOUT_BOT_COMMIT=unknown
ENV ROLLOUT_BOT_COMMIT=${ROLLOUT_BOT_COMMIT} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOST=0.0.0.0 \
    PORT=3000
# The locked wheels, their hashes checked again, then the bot's own wheel on top of them
# (`--no-deps`: nothing but the lock); `pip check` fails the build if the lock misses one of the
# bot's dependencies.
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    --mount=type=bind,source=requirements.lock,target=/tmp/requirements.lock \
    pip install --no-index --find-links=/wheels --require-hashes -r /tmp/requirements.lock \
    && pip install --no-index --no-deps /wheels/rollout_bot-*.whl \
    && pip check \
    && pip uninstall --yes --quiet setuptools wheel \
    && groupadd --system --gid 10001 rollout \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --shell /usr/sbin/nologin rollout \
    && install -d -o 10001 -g 10001 /app /app/data
# The working directory is the bot's own, with a `.env` if one is mounted; `/app/data` is for
# a one-replica install's SQLite file (mount a volume there: a new one takes its owner).
WORKDIR /app
# `rollout-bot doctor` compares the token's scopes with the manifest's.
COPY --chown=10001:10001 manifest.yml ./
USER 10001:10001
EXPOSE 3000
# Liveness only (the process answers); readiness is /readyz, for the load balancer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '3000')}/healthz\", timeout=4)"]
# SIGTERM drains (readyz 503, timers given back, requests finished) within
# SHUTDOWN_GRACE_SECONDS: give the container longer than that to stop.
STOPSIGNAL SIGTERM
ENTRYPOINT ["rollout-bot"]
CMD ["serve"]
