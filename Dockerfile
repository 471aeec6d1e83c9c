# syntax=docker/dockerfile:1
# One image for the API (`serve`, the default) and the background worker (`worker`).
# Multi-stage: dependencies are installed in a builder; the runtime image carries only the
# virtualenv and the source, and runs as an unprivileged user.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
# dependencies first (pinned in pyproject.toml), so source changes do not reinstall them
COPY pyproject.toml README.md ./
RUN mkdir app && touch app/__init__.py && pip install --no-cache-dir . && pip uninstall -y canopy
COPY app ./app
COPY migrations ./migrations
COPY rules ./rules
COPY alembic.ini ./
# editable: the package runs from /app, where migrations/ and rules/ live beside it
RUN pip install --no-cache-dir --no-deps -e .

FROM python:3.11-slim
# CANOPY_HOST/CANOPY_PORT are read by `canopy serve` and by the health check alike
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CANOPY_DATA_DIR=/data \
    CANOPY_HOST=0.0.0.0 \
    CANOPY_PORT=8000
RUN groupadd --system --gid 10001 canopy \
    && useradd --system --uid 10001 --gid canopy --home-dir /data canopy \
    && mkdir -p /data && chown canopy:canopy /data
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
# numeric, so Kubernetes' runAsNonRoot can verify it
USER 10001:10001
EXPOSE 8000
# no VOLUME: it would give every container an anonymous volume; mount a named one on /data
# only when running with the embedded PostgreSQL (docker run -v canopy-data:/data ...)
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-m", "app.core.healthcheck"]
# `docker stop` sends SIGTERM: uvicorn finishes requests in flight (CANOPY_GRACEFUL_TIMEOUT)
STOPSIGNAL SIGTERM
ENTRYPOINT ["canopy"]
CMD ["serve"]
