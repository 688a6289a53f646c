"""The trainer entry object: data → fit → export → verify → calibrate → register → promote.

One :class:`Trainer` is built from one :class:`TrainJob` (what to train on, where to
register) and one :class:`~training.config.TrainConfig` (the method). ``run`` never
leaves a half-written version visible and never replaces the champion on failure:
everything is built in a temporary folder and the registry write is atomic.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import onnx
import onnxruntime
import torch

from pipeline.config import KafkaConfig
from pipeline.engine.anomaly import AnomalyParams
from pipeline.engine.normalise import NormaliserParams
from pipeline.engine.registry import FORMAT_VERSION, ModelMeta, Registry, new_version
from pipeline.errors import DataError, RegistryError
from training.config import TrainConfig
from training.data import Series, load_kafka, load_paths, parse_duration, prepare, without_tail
from training.evaluate import (
    alarm_rate,
    calibrate,
    drift_references,
    forecast_metrics,
    live_mae,
    plot_forecasts,
    repeat_rate,
    replay,
)
from training.export import export_step_model
from training.loop import fit, seed_everything
from training.model import LSTMForecaster

__all__ = ["TrainJob", "TrainOutcome", "Trainer", "decide_promotion"]

log = logging.getLogger(__name__)
Promote = Literal["auto", "always", "never", "shadow"]
WEIGHTS = "weights.pt"  # the torch state dict beside model.onnx, for warm starts
# What must match for the champion's weights to load into a new model.
ARCHITECTURE = ("cell", "layers", "hidden", "horizon", "covariates", "distribution", "residual")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainJob:
    """Where the data comes from and where the model goes."""

    data: tuple[Path, ...] = ()
    from_kafka: str | None = None
    since: str = "7d"
    registry: Path = Path("exported_models")
    model: str = "default"
    promote: Promote = "auto"
    plot: bool = True
    progress: bool = True
    kafka: KafkaConfig = dataclasses.field(default_factory=KafkaConfig)
    publish_topic: str | None = None
    sign_key: Path | None = None  # Ed25519 private key (PEM) to sign published models
    # Fine-tune the champion's weights instead of starting from random ones (when its
    # architecture matches this config); the nightly refresh on recent live data.
    warm_start: bool = False
    # "drift": train only when the champion's error on the recent data exceeds its own
    # validation error drift_ratio times (else the run is skipped: nothing changed).
    when: str = "always"
    drift_ratio: float = 1.3

    def __post_init__(self) -> None:
        if bool(self.data) == bool(self.from_kafka):
            raise DataError("give training data either as --data PATH or as --from-kafka TOPIC")
        if self.promote not in ("auto", "always", "never", "shadow"):
            raise DataError(
                f"--promote must be auto, always, never or shadow, got {self.promote!r}"
            )
        if self.when not in ("always", "drift"):
            raise DataError(f"--when must be always or drift, got {self.when!r}")
        if self.drift_ratio <= 0:
            raise DataError(f"--drift-ratio must be > 0, got {self.drift_ratio}")


@dataclasses.dataclass(frozen=True)
class TrainOutcome:
    version: str | None  # None: the run was skipped (--when drift, no drift)
    promoted: bool
    reason: str
    folder: Path | None
    doc: dict[str, Any]


def decide_promotion(
    mode: Promote, challenger_mae: float, champion_mae: float | None
) -> tuple[bool, str]:
    """Champion/challenger: ``auto`` promotes only a strictly better (or the first) model."""
    if mode == "always":
        return True, "promotion forced (--promote always)"
    if mode == "never":
        return False, "promotion disabled (--promote never)"
    if champion_mae is None:
        return True, "no champion yet"
    if mode == "shadow":
        if challenger_mae < champion_mae:
            return False, (
                f"challenger MAE {challenger_mae:.4f} < champion {champion_mae:.4f}: "
                "shadowed, for scorers to promote on live evidence"
            )
        return False, f"challenger MAE {challenger_mae:.4f} >= champion {champion_mae:.4f}"
    if challenger_mae < champion_mae:
        return True, f"challenger MAE {challenger_mae:.4f} < champion {champion_mae:.4f}"
    return False, f"challenger MAE {challenger_mae:.4f} >= champion {champion_mae:.4f}"


class Trainer:
    """Trains, verifies and registers one model version."""

    def __init__(
        self,
        job: TrainJob,
        config: TrainConfig,
        norm: NormaliserParams | None = None,
        anomaly: AnomalyParams | None = None,
    ) -> None:
        self.job = job
        self.config = config
        self.norm = norm or NormaliserParams()
        self.anomaly = anomaly or AnomalyParams()
        self.registry = Registry(job.registry)

    def load_streams(self) -> list[Series]:
        if self.job.from_kafka:
            return load_kafka(self.job.kafka, self.job.from_kafka, parse_duration(self.job.since))
        return load_paths(self.job.data)

    def run(self) -> TrainOutcome:
        started = time.monotonic()
        cfg = self.config
        seed_everything(cfg.seed)
        # A run killed mid-write leaves a temporary folder behind; nothing else writes
        # this model's versions (one trainer per model), so it can go.
        self.registry.cleanup_tmp(self.job.model)
        # 1. Data: the last gate_fraction of every stream is kept back for step 5.
        streams = self.load_streams()
        if self.job.when == "drift":
            # 1a. Nothing changed (the champion forecasts the recent data about as well as
            #     its own validation data): skip the run.
            drift = self._drift(streams)
            if drift is not None and drift < self.job.drift_ratio:
                reason = (
                    f"skipped: no drift (the champion's error on the recent data is "
                    f"{drift:.2f}x its validation error, below {self.job.drift_ratio})"
                )
                log.info("%s", reason)
                return TrainOutcome(None, False, reason, None, {"drift_ratio": drift})
        prepared = prepare(
            [without_tail(s, cfg.gate_fraction) for s in streams],
            self.norm,
            cfg.horizon,
            cfg.val_fraction,
            cfg.segment,
            cfg.burn_in,
            cfg.covariates,
        )
        log.info("data: %s", prepared.summary)
        # 2. Fit (from the champion's weights on a warm start).
        model = LSTMForecaster(len(prepared.features), cfg)
        started_from = self._warm_start(model, prepared.features) if self.job.warm_start else None
        result = fit(model, prepared, cfg, progress=self.job.progress)
        version = self._unique_version()
        with tempfile.TemporaryDirectory(prefix="statecast-train-") as tmp:
            onnx_path = Path(tmp) / "model.onnx"
            # 3. Export and verify (checker + step parity).
            export = export_step_model(model, onnx_path)
            doc = self._doc(version, prepared.features, prepared.summary, result, export)
            doc["warm_start_from"] = started_from
            weights = Path(tmp) / WEIGHTS
            torch.save(model.state_dict(), weights)
            meta = ModelMeta.from_json({**doc, "sha256": ""}, onnx_path)
            # 4. Calibrate the anomaly scorer on the exported model, as the scorer will run it.
            first = replay(meta, prepared.streams, threads=cfg.threads)
            anom = dataclasses.replace(
                calibrate(first, cfg.val_fraction, self.anomaly),
                prior_rep=repeat_rate([s.values for s in prepared.streams]),
            )
            meta = dataclasses.replace(meta, anomaly=anom)
            rep = replay(meta, prepared.streams, threads=cfg.threads)
            metrics = forecast_metrics(rep, cfg.val_fraction, cfg.horizon)
            metrics["alarm_rate"] = alarm_rate(rep, cfg.val_fraction, anom.threshold)
            # The references for drift: the scorer's live error measure and where the
            # network's inputs fell, on validation data.
            metrics.update(drift_references(rep, cfg.val_fraction))
            doc["anomaly"] = anom.to_json()
            doc["validation"] = metrics
            # 5. Champion / challenger on the same held-out window, which neither was
            #    trained or early-stopped on (each stream's last gate_fraction).
            kept = {s.name for s in prepared.streams}
            gate = [s for s in streams if s.name in kept]
            challenger_mae = self._gate_mae(meta, gate)
            champion_mae = self._champion_mae(gate)
            promote, reason = decide_promotion(self.job.promote, challenger_mae, champion_mae)
            doc["champion_comparison"] = {
                "champion": self.registry.current(self.job.model),
                "window": f"the last {cfg.gate_fraction:.0%} of every stream, held out",
                "champion_mean_mae": champion_mae,
                "challenger_mean_mae": challenger_mae,
                "promoted": promote,
                # --promote shadow: a better challenger runs beside the champion until
                # scorers promote or reject it on live evidence (pipeline.scorer.live).
                "shadowed": self.job.promote == "shadow"
                and champion_mae is not None
                and challenger_mae < champion_mae,
                "reason": reason,
            }
            doc["train_seconds"] = round(time.monotonic() - started, 2)
            # 6. Register atomically, then promote.
            folder = self.registry.write_version(
                self.job.model, version, onnx_path, doc, extra={WEIGHTS: weights}
            )
        if self.job.plot:
            plot_forecasts(rep, cfg.val_fraction, folder / "validation.png")
        if doc["champion_comparison"]["shadowed"]:
            self.registry.set_shadow(self.job.model, version)
        if promote:
            self.registry.promote(self.job.model, version)
            if self.job.publish_topic:
                from pipeline.kafka_io.model_topic import publish_model

                publish_model(
                    self.job.kafka,
                    self.job.publish_topic,
                    self.registry.meta(self.job.model, version),
                    sign_key=self.job.sign_key,
                )
        log.info("registered %s/%s (%s)", self.job.model, version, reason)
        return TrainOutcome(version, promote, reason, folder, doc)

    def _warm_start(self, model: LSTMForecaster, features: tuple[str, ...]) -> str | None:
        """Load the champion's weights into ``model`` if it has the same architecture;
        returns the champion's version, or None (then training starts from scratch)."""
        champion = self.registry.current(self.job.model)
        if champion is None:
            log.info("warm start: no champion yet; training from scratch")
            return None
        folder = self.registry.root / self.job.model / champion
        try:
            doc = json.loads((folder / "model.json").read_text())
            theirs = {k: doc["training_config"].get(k) for k in ARCHITECTURE}
            state = torch.load(folder / WEIGHTS, weights_only=True)
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            log.warning(
                "warm start: champion %s has no usable weights (%s); from scratch", champion, exc
            )
            return None
        ours = {k: self.config.to_json().get(k) for k in ARCHITECTURE}
        ours["covariates"] = list(ours["covariates"] or [])
        theirs["covariates"] = list(theirs["covariates"] or [])
        if theirs != ours or tuple(doc.get("features", ())) != features:
            log.warning(
                "warm start: champion %s has another architecture or features; from scratch",
                champion,
            )
            return None
        model.load_state_dict(state)
        log.info("warm start from %s/%s", self.job.model, champion)
        return champion

    def _unique_version(self) -> str:
        base = new_version()
        existing = set(self.registry.versions(self.job.model))
        version, i = base, 1
        while version in existing or (self.registry.root / self.job.model / version).exists():
            i += 1
            version = f"{base}-{i}"
        return version

    def _champion(self, streams: list[Series], otherwise: str) -> ModelMeta | None:
        """The promoted version, if there is one that loads and has ``streams``' features
        (else None, logged with what happens ``otherwise``)."""
        if self.registry.current(self.job.model) is None:
            return None
        try:
            champion = self.registry.meta(self.job.model)
        except RegistryError as exc:
            log.warning("champion cannot be loaded (%s); %s", exc, otherwise)
            return None
        if champion.features != streams[0].features:
            log.warning("champion has other features than the data; %s", otherwise)
            return None
        return champion

    def _champion_mae(self, streams: list[Series]) -> float | None:
        champion = self._champion(streams, "treating as absent")
        return None if champion is None else self._gate_mae(champion, streams)

    def _drift(self, streams: list[Series]) -> float | None:
        """The champion's live error on each stream's last ``gate_fraction`` over its own
        validation error (None: no champion, or one without that reference)."""
        champion = self._champion(streams, "training")
        if champion is None:
            return None
        reference = champion.raw.get("validation", {}).get("live_mae")
        if not isinstance(reference, float) or not reference > 0:
            return None
        rep = replay(champion, streams, threads=self.config.threads)
        return live_mae(rep, self.config.gate_fraction) / reference

    def _gate_mae(self, meta: ModelMeta, streams: list[Series]) -> float:
        """Mean scale-free MAE of ``meta`` over each stream's last ``gate_fraction``."""
        rep = replay(meta, streams, threads=self.config.threads)
        mae: float = forecast_metrics(rep, self.config.gate_fraction, meta.horizon)["mean_mae"]
        return mae

    def _doc(
        self,
        version: str,
        features: tuple[str, ...],
        summary: dict[str, Any],
        result: Any,
        export: Any,
    ) -> dict[str, Any]:
        cfg = self.config
        L, H, F, Z = cfg.layers, cfg.hidden, len(features), cfg.horizon
        return {
            "format_version": FORMAT_VERSION,
            "model": self.job.model,
            "version": version,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "features": list(features),
            "covariates": list(cfg.covariates),
            "distribution": cfg.distribution,
            "horizon": Z,
            "layers": L,
            "hidden": H,
            "inputs": {
                "x": ["batch", F + len(cfg.covariates)],
                "h": [L, "batch", H],
                "c": [L, "batch", H],
            },
            "outputs": {
                "forecast": ["batch", Z, F],
                "scale": ["batch", Z, F],
                "h_out": [L, "batch", H],
                "c_out": [L, "batch", H],
            },
            "normalisation": self.norm.to_json(),
            "anomaly": self.anomaly.to_json(),
            "training_config": cfg.to_json(),
            "data_summary": summary,
            "fit": {
                "best_epoch": result.best_epoch,
                "epochs_run": result.epochs_run,
                "best_val_loss": result.best_val_loss,
                "stopped_early": result.stopped_early,
                "seconds": round(result.seconds, 2),
                "history": result.history,
            },
            "parity_max_abs_diff": export.parity_max_abs_diff,
            "export": {
                "nodes": export.nodes,
                "ops": list(export.ops),
                "bytes": export.bytes,
                "seconds": round(export.seconds, 3),
                "opset": 17,
                "exporter": "torchscript",
            },
            "library_versions": {
                "torch": torch.__version__,
                "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__,
            },
        }
