# One image for every process of the service: `endcontact web`, `endcontact worker`,
# and the key commands (`docker compose run --rm web endcontact keys ...`).
# Python pinned to a patch release; packages to constraints.txt, the versions the
# tests last passed with (scripts/constraints writes it).
FROM python:3.11.14-slim-bookworm AS app

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY constraints.txt pyproject.toml README.md ./
COPY api ./api
COPY worker ./worker
COPY shared ./shared
COPY cli ./cli
COPY client ./client
# The Python client (client/) is a distribution of its own that the service depends
# on and no index has: named beside the service, pip takes it from here.
RUN pip install --constraint constraints.txt ./client . \
    && useradd --system --no-create-home --uid 10001 endcontact
# Numeric, so a runtime can check it is not root without reading /etc/passwd.
USER 10001
EXPOSE 8000
CMD ["endcontact", "web", "--host", "0.0.0.0", "--port", "8000"]

# Flower (compose profile "monitoring"): the same image, plus Flower.
FROM app AS flower
USER root
RUN pip install --constraint constraints.txt ./client ".[flower]"
USER 10001
EXPOSE 5555
CMD ["celery", "-A", "worker.celery_app", "flower", "--address=0.0.0.0", "--port=5555"]

# `docker build .` gives the service image.
FROM app
