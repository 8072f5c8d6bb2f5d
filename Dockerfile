# One image for both process kinds: `endcontact web` and `endcontact worker`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY api ./api
COPY worker ./worker
COPY shared ./shared
COPY cli ./cli
RUN pip install . && useradd --system --uid 10001 endcontact
USER endcontact
EXPOSE 8000
CMD ["endcontact", "web", "--host", "0.0.0.0", "--port", "8000"]
