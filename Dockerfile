# One Railway service: web + worker in one process (`serve`); channels switched by ENABLE_*.
FROM python:3.11-slim AS build
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m venv /venv && /venv/bin/pip install --upgrade pip && /venv/bin/pip install .

FROM python:3.11-slim
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    ENVIRONMENT=production HOST=0.0.0.0 PORT=3000
RUN useradd --create-home --uid 10001 gomflow
WORKDIR /app
COPY --from=build /venv /venv
COPY migrations ./migrations
USER gomflow
EXPOSE 3000
# Migrations are idempotent and take an advisory lock, so replicas may start together.
CMD ["sh", "-c", "gomflow-messaging migrate && exec gomflow-messaging serve"]
