# syntax=docker/dockerfile:1
# hostfit: the index proxy in a small, non-root image.
#
#   docker build -t hostfit .
#   docker run -p 8080:8080 -e HOSTFIT_UPSTREAM=https://mirror.internal.example/simple/ \
#       -v hostfit-cache:/var/cache/hostfit -v "$PWD/deploy/rules:/etc/hostfit/rules:ro" hostfit
#
# Configure it with HOSTFIT_* variables (README, "Configuration"). Set the port with
# HOSTFIT_PORT, not --port, so that the health check asks the right one. Operations:
# deploy/OPERATIONS.md. tests/deploy/ runs the install, start and health check commands
# below as plain steps, without a container engine: keep them plain.

# Build the wheel in a throw-away stage: the final image gets no build tools or sources.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy ./proxy
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir /wheels/*.whl
# A numeric user, so that Kubernetes' runAsNonRoot can check it. The cache belongs to it;
# the rules directory is empty and read-only: mount yours over it (a directory of *.toml).
RUN groupadd --system --gid 10001 hostfit \
    && useradd --system --uid 10001 --gid hostfit --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin hostfit \
    && mkdir -p /var/cache/hostfit /etc/hostfit/rules \
    && chown 10001:10001 /var/cache/hostfit
ENV HOSTFIT_HOST=0.0.0.0 \
    HOSTFIT_PORT=8080 \
    HOSTFIT_CACHE_DIR=/var/cache/hostfit \
    HOSTFIT_RULES=/etc/hostfit/rules
# Blobs, and the embedded state store when no Redis is configured (its trust-on-first-use
# digests are the one thing in it that is not a cache: deploy/OPERATIONS.md, "Backups").
VOLUME ["/var/cache/hostfit"]
USER 10001:10001
EXPOSE 8080
# Liveness (/healthz), not readiness: a lost Redis makes /readyz fail, and restarting the
# container would not bring Redis back. The port is read when the check runs.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HOSTFIT_PORT', '8080'), timeout=4)"]
CMD ["hostfit", "serve"]
