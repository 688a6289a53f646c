FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY training ./training
RUN pip install --no-cache-dir '.[train,confluent]'
# The shipped registry; docker-compose copies it into the shared models volume once.
COPY exported_models ./exported_models.shipped
COPY exported_models ./exported_models
ENTRYPOINT []
