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
    TRADECTL_HOME=/app
ENTRYPOINT ["tradectl"]
CMD ["run"]
