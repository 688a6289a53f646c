# Two images from one file:
#   scorer  (default target): the streaming side only; no torch (the scorer never imports it)
#   trainer: adds the `train` extra (torch, matplotlib) for `statecast train`
FROM python:3.11-slim AS scorer
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY training ./training
RUN pip install --no-cache-dir '.[confluent,signing]'
# The shipped registry; docker-compose copies it into the shared models volume once.
COPY exported_models ./exported_models.shipped
COPY exported_models ./exported_models
ENTRYPOINT []

FROM scorer AS trainer
RUN pip install --no-cache-dir '.[train,confluent,signing]'
