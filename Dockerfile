# The largeattr worker (and CLI) as an image; docker-compose.yml builds it.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md worker.py ./
COPY largeattr largeattr
COPY workflows workflows
COPY activities activities
RUN pip install --no-cache-dir . && useradd --system --uid 10001 largeattr
USER largeattr
CMD ["python", "-m", "largeattr.worker"]
