# syntax=docker/dockerfile:1
# Multi-stage build: dependencies are installed in a builder, the runtime image carries only the
# virtualenv and the source, and runs as an unprivileged user.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
# dependencies first, so source changes do not reinstall them
COPY pyproject.toml README.md ./
RUN mkdir app && touch app/__init__.py && pip install . && pip uninstall -y canopy
COPY app ./app
COPY migrations ./migrations
COPY rules ./rules
COPY alembic.ini ./
# editable: the package runs from /app, where migrations/ and rules/ live beside it
RUN pip install --no-deps -e .

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CANOPY_DATA_DIR=/data
RUN groupadd --system canopy && useradd --system --gid canopy --home-dir /data canopy \
    && mkdir -p /data && chown canopy:canopy /data
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
USER canopy
EXPOSE 8000
VOLUME ["/data"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["canopy"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
