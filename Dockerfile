# tradectl engine image. The same image runs `tradectl migrate` (one-shot) and `tradectl run`.
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN useradd --create-home --uid 10001 tradectl
WORKDIR /app

COPY pyproject.toml README.md alembic.ini ./
COPY engine ./engine
COPY strategies ./strategies
COPY migrations ./migrations
RUN pip install .

USER tradectl
ENV TRADECTL_LOG_FORMAT=json \
    TRADECTL_HOME=/app \
    TRADECTL_METRICS_PORT=9108
# Alive: the engine's event loop answers /healthz (compose asks /readyz instead: ready to trade).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('TRADECTL_METRICS_PORT', '9108') + '/healthz', timeout=3)"
ENTRYPOINT ["tradectl"]
CMD ["run"]
