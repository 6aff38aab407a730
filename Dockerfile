# syntax=docker/dockerfile:1
# PeerPush Ledger: one image for every process of the topology (deploy/compose.yaml): the API
# (`peerpush serve`), `peerpush worker`, `peerpush projections run`, `peerpush migrate`.
#
# The base is pinned by exact tag; pin its digest too when you build (docs/operations.md):
#   docker buildx imagetools inspect python:3.11.14-slim-bookworm
# then append @sha256:<digest> to both FROM lines.

FROM python:3.11.14-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /app
# Dependencies first (a layer that changes only with pyproject.toml), then the code.
COPY pyproject.toml README.md ./
COPY domain domain
COPY application application
COPY projections projections
COPY adapters adapters
COPY api api
RUN /opt/venv/bin/pip install .
COPY migrations migrations

FROM python:3.11.14-slim-bookworm AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ENV=production \
    LOG_FORMAT=json
RUN groupadd --system --gid 10001 peerpush \
    && useradd --system --uid 10001 --gid peerpush --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin peerpush
COPY --from=build /opt/venv /opt/venv
# The sources beside the migrations they name (adapters/migrations.py finds them there).
COPY --from=build --chown=root:root /app /app
WORKDIR /app
USER 10001:10001
EXPOSE 8000 9464
# The API's liveness; the worker's and the projections' services override it in compose.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/v1/health', timeout=2)"]
CMD ["peerpush", "serve", "--host", "0.0.0.0", "--port", "8000"]
