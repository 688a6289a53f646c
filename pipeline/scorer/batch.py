"""Steps 2-4 of the checkpoint protocol for one poll batch: route, decode, score, and
produce one output or one dead-letter record per input record.

Poison-pill rule: nothing a producer sends may stop the scorer. Decoding never raises,
the engine screens what would poison a stream and isolates a failing step to its event
(:meth:`~pipeline.engine.serving.ServedModel.score`), and here an output that cannot
be encoded, or any other unexpected exception while handling a record, sends that
record (only it) to the dead-letter topic as ``internal_error`` with the exception in
its ``statecast.error`` header; the batch goes on. Kafka errors are not caught here:
they are the scorer's to recover from.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.config import ScorerConfig
from pipeline.engine.serving import ServedModel
from pipeline.engine.stepper import REASONS
from pipeline.errors import KafkaError, describe
from pipeline.kafka_io import Producer, Record
from pipeline.kafka_io.binary_scores import encode_scores_binary
from pipeline.kafka_io.codec import decode_batch
from pipeline.kafka_io.outputs import dlq_headers, encode_scores
from pipeline.metrics import ScorerMetrics
from pipeline.scorer.live import LiveJudge
from pipeline.scorer.routing import Router

__all__ = ["BatchScorer"]

log = logging.getLogger(__name__)


class BatchScorer:
    """Scores poll batches; returns, per model, the state slots each batch touched."""

    def __init__(
        self,
        config: ScorerConfig,
        models: dict[str, ServedModel],
        router: Router,
        metrics: ScorerMetrics,
        live: LiveJudge | None = None,
    ) -> None:
        self.config = config
        self.models = models
        self.router = router
        self.metrics = metrics
        self.live = live

    def score(
        self, records: list[Record], producer: Producer, now: float
    ) -> dict[str, npt.NDArray[np.int64]]:
        # 2. Route and decode.
        by_model: dict[str, list[int]] = defaultdict(list)
        for i, rec in enumerate(records):
            by_model[self.router.model_for(rec.key)].append(i)
        touched: dict[str, npt.NDArray[np.int64]] = {}
        for name, idx in by_model.items():
            served, recs = self.models[name], [records[i] for i in idx]
            try:
                touched[name] = self._score_model(served, recs, producer, now)
            except KafkaError:
                raise  # the scorer's to recover from
            except Exception:
                # Not expected (the engine isolates its own failures): narrow it down by
                # handling the records one at a time.
                log.exception("model %s: a batch failed; handling its records singly", name)
                touched[name] = self._score_singly(served, recs, producer, now)
        return touched

    def _score_singly(
        self, served: ServedModel, recs: list[Record], producer: Producer, now: float
    ) -> npt.NDArray[np.int64]:
        touched = [np.empty(0, np.int64)]
        for rec in recs:
            try:
                touched.append(self._score_model(served, [rec], producer, now))
            except KafkaError:
                raise
            except Exception as exc:
                self._dead_letter(producer, rec, "internal_error", describe(exc))
        return np.unique(np.concatenate(touched))

    def _score_model(
        self, served: ServedModel, recs: list[Record], producer: Producer, now: float
    ) -> npt.NDArray[np.int64]:
        cfg = self.config
        batch = decode_batch(
            [(r.key, r.value) for r in recs], served.meta.features, cfg.max_message_bytes
        )
        src = [recs[i] for i in batch.index.tolist()]
        # 3. Score: the i-th event of every stream in one ONNX call.
        scored = served.score(
            batch,
            np.arange(len(batch.stream_ids), dtype=np.int64),
            now,
            partitions=np.asarray([r.partition for r in src], np.int64),
            offsets=np.asarray([r.offset for r in src], np.int64),
        )
        if self.live is not None:
            # Live evidence, and the shadow scored on the same events: whatever happens
            # there must not cost the champion's outputs anything.
            try:
                self.live.observe(served, batch, scored, now)
            except Exception:
                log.exception("model %s: live evidence failed; scoring goes on", served.name)
        # 4. One output per accepted event, one dead letter per rejected record.
        rows = scored.rows.tolist()
        out_recs = [src[r] for r in rows]

        def encode(at: slice) -> list[bytes]:
            common: dict[str, Any] = {
                "values": batch.values[scored.rows[at]],
                "forecast": scored.forecast[at],
                "score": scored.score[at],
                "lo": None if served.band is None else scored.lo[at],
                "hi": None if served.band is None else scored.hi[at],
                "expected_lo": scored.expected_lo[at],
                "expected_hi": scored.expected_hi[at],
                "shares": None if scored.share is None else scored.share[at],
                "warm": scored.warm[at],
                "threshold": served.threshold,
                "features": served.meta.features,
                "model": served.name,
                "version": served.version,
                "records": out_recs[at],
            }
            if cfg.output_format == "binary":
                return encode_scores_binary(
                    ts=batch.ts[scored.rows[at]], reason=scored.reason[at], **common
                )
            return encode_scores(
                stream_ids=[batch.stream_ids[r] for r in rows[at]],
                ts_raw=[batch.ts_raw[r] for r in rows[at]],
                reasons=[REASONS[k] for k in scored.reason[at].tolist()],
                **common,
            )

        failed: list[tuple[int, str]] = []
        try:
            values = encode(slice(None))
            sent = out_recs
        except Exception:  # one row cannot be encoded: find it, keep the others
            values, sent = [], []
            for j in range(len(rows)):
                try:
                    values.extend(encode(slice(j, j + 1)))
                    sent.append(out_recs[j])
                except Exception as exc:
                    failed.append((j, describe(exc)))
        producer.send_many(cfg.output_topic, [r.key for r in sent], values)
        for rej in batch.rejections + scored.rejections:
            self._dead_letter(producer, recs[rej.index], rej.reason, rej.detail)
        for j, why in failed:
            self._dead_letter(producer, out_recs[j], "internal_error", why)
        resets = sum(1 for rej in scored.rejections if rej.reason == "state_reset")
        if resets:
            self.metrics.state_resets.labels(served.name).inc(resets)
        self.metrics.scored.labels(served.name).inc(len(sent))
        flagged = (np.nan_to_num(scored.score) >= served.threshold) & scored.warm
        if flagged.any():
            for k, n in enumerate(np.bincount(scored.reason[flagged], minlength=len(REASONS))):
                if n:
                    self.metrics.anomalies.labels(served.name, REASONS[k]).inc(int(n))
        return scored.touched

    def _dead_letter(self, producer: Producer, rec: Record, reason: str, detail: str) -> None:
        producer.send(self.config.dlq_topic, rec.key, rec.value, dlq_headers(rec, reason, detail))
        self.metrics.dead_lettered.labels(reason).inc()
