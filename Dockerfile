FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY training ./training
RUN pip install --no-cache-dir '.[train]'
COPY exported_models ./exported_models
ENTRYPOINT []
