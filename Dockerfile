# The one image every service of docker-compose.yml runs (API, workers, beat, Flower, and
# the one-shot migration); the command decides which.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies and code in one step: the project is small, and pyproject.toml is the only
# list of dependencies, so there is no second list to keep in step for layer caching.
COPY pyproject.toml README.md beat_schedule.py ./
COPY loyalty ./loyalty
COPY workers ./workers
RUN pip install . \
    && useradd --system --create-home --uid 10001 --home-dir /home/loyalty loyalty \
    && mkdir -p /var/lib/loyalty \
    && chown loyalty:loyalty /var/lib/loyalty

# Not root: a bug in a request handler or a task must not own the container. The one
# writable place is /var/lib/loyalty (beat's schedule file; a named volume in compose).
USER loyalty
ENV LOYALTY_DATA_DIR=/var/lib/loyalty

EXPOSE 8000 5555
CMD ["loyalty", "--help"]
