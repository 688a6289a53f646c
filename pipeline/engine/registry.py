"""The model registry: versioned ONNX step models on disk, one promoted version per model.

Layout (root configurable, default ``exported_models/``)::

    <model>/<version>/model.onnx     the single-step LSTM (x, h, c) -> (forecast, scale, h_out, c_out)
    <model>/<version>/model.json     metadata (format_version, features, horizon, sha256, ...)
    <model>/CURRENT                  the promoted version, replaced atomically
    <model>/HISTORY                  promotions, one version per line (for rollback)
    <model>/SHADOW                   the version scorers run beside CURRENT, unserved
                                     (its scores compared live, pipeline.scorer.live)

Writes are crash-safe: a version is written into a hidden temporary folder and
renamed into place in one step, and CURRENT is replaced with ``os.replace`` after
an fsync, so a crash at any point leaves the previous CURRENT valid and never
exposes a half-written version.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from pipeline.engine.anomaly import AnomalyParams
from pipeline.engine.covariates import COVARIATES
from pipeline.engine.interval import DISTRIBUTIONS
from pipeline.engine.normalise import NormaliserParams
from pipeline.errors import ModelRejected, RegistryError

__all__ = ["FORMAT_VERSION", "ModelMeta", "Registry", "check_name", "new_version", "sha256_of"]

FORMAT_VERSION = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def new_version() -> str:
    """Sortable, unique enough: ``v20261125T181502Z``."""
    return time.strftime("v%Y%m%dT%H%M%SZ", time.gmtime())


def check_name(kind: str, name: str) -> None:
    if not _NAME.match(name):
        raise RegistryError(f"{kind} name {name!r} must match {_NAME.pattern}")


@dataclasses.dataclass(frozen=True)
class ModelMeta:
    """What the scorer needs from model.json, validated."""

    name: str
    version: str
    features: tuple[str, ...]
    covariates: tuple[str, ...]  # event-time inputs after the features (engine.covariates)
    distribution: str | None  # of the scale head (engine.interval); None: point forecasts
    horizon: int
    layers: int
    hidden: int
    normalisation: NormaliserParams
    anomaly: AnomalyParams
    sha256: str
    onnx_path: Path
    raw: dict[str, Any]

    @classmethod
    def from_json(cls, doc: dict[str, Any], onnx_path: Path) -> ModelMeta:
        try:
            if doc["format_version"] != FORMAT_VERSION:
                raise ModelRejected(
                    f"model.json format_version {doc['format_version']} is not {FORMAT_VERSION}"
                )
            return cls(
                name=str(doc["model"]),
                version=str(doc["version"]),
                features=tuple(doc["features"]),
                covariates=_covariates(doc.get("covariates", [])),
                distribution=_distribution(doc.get("distribution")),
                horizon=int(doc["horizon"]),
                layers=int(doc["layers"]),
                hidden=int(doc["hidden"]),
                normalisation=NormaliserParams.from_json(doc["normalisation"]),
                anomaly=AnomalyParams.from_json(doc["anomaly"]),
                sha256=str(doc["sha256"]),
                onnx_path=onnx_path,
                raw=doc,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelRejected(f"model.json at {onnx_path.parent} is invalid: {exc!r}") from exc


_VERSION_FILES = ("model.onnx", "model.json")


def _checked_changes(current: AnomalyParams, changes: dict[str, Any]) -> dict[str, Any]:
    """``changes`` to anomaly parameters, each of its field's type (an int for a float
    field is a float); a clear error for an unknown field or a value of another type."""
    fields = {f.name: getattr(current, f.name) for f in dataclasses.fields(current)}
    out: dict[str, Any] = {}
    for key, value in changes.items():
        if key not in fields:
            raise RegistryError(
                f"{key!r} is not an anomaly parameter (known: {', '.join(sorted(fields))})"
            )
        kind = type(fields[key])
        if kind is float and type(value) is int:
            value = float(value)
        if type(value) is not kind:
            raise RegistryError(f"anomaly parameter {key!r} takes a {kind.__name__}, not {value!r}")
        out[key] = value
    return out


def _distribution(raw: Any) -> str | None:
    if raw is None:
        return None
    if raw not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {raw!r} (known: {DISTRIBUTIONS})")
    return str(raw)


def _covariates(raw: Any) -> tuple[str, ...]:
    names = tuple(str(n) for n in raw)
    unknown = set(names) - set(COVARIATES)
    if unknown:
        raise ValueError(f"unknown covariates {sorted(unknown)} (known: {COVARIATES})")
    return names


class Registry:
    """Read and write one registry folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def models(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )

    def versions(self, model: str) -> list[str]:
        folder = self.root / model
        if not folder.is_dir():
            return []
        return sorted(
            p.name
            for p in folder.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / "model.json").exists()
        )

    def current(self, model: str) -> str | None:
        try:
            version = (self.root / model / "CURRENT").read_text().strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RegistryError(f"cannot read {self.root / model / 'CURRENT'}: {exc}") from exc
        return version or None

    def shadow(self, model: str) -> str | None:
        """The version scorers shadow beside the promoted one, if any."""
        try:
            version = (self.root / model / "SHADOW").read_text().strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RegistryError(f"cannot read {self.root / model / 'SHADOW'}: {exc}") from exc
        return version or None

    def set_shadow(self, model: str, version: str | None) -> None:
        """Shadow ``version`` (refused if it does not load), or stop shadowing (None)."""
        path = self.root / model / "SHADOW"
        if version is None:
            path.unlink(missing_ok=True)
            return
        self.meta(model, version)
        self._write_atomically(path, version + "\n")

    def annotate(self, model: str, version: str, key: str, value: Any) -> None:
        """Set ``key`` in a version's model.json (what happened to it after training, e.g.
        the live evidence it was promoted or rolled back on); atomic, and never touches
        the ONNX file its sha256 covers."""
        path = self.root / model / version / "model.json"
        doc = json.loads(path.read_text())
        doc[key] = value
        self._write_atomically(path, json.dumps(doc, indent=2) + "\n")

    @staticmethod
    def _write_atomically(path: Path, text: str) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def history(self, model: str) -> list[str]:
        try:
            return (self.root / model / "HISTORY").read_text().split()
        except FileNotFoundError:
            return []

    def meta(self, model: str, version: str | None = None, *, verify: bool = True) -> ModelMeta:
        """Load (and by default verify the sha256 of) a version; the promoted one if None."""
        version = version or self.current(model)
        if version is None:
            raise RegistryError(
                f"model {model!r} has no promoted version in {self.root}; train one "
                f"(statecast train) or promote one (statecast models promote)"
            )
        folder = self.root / model / version
        try:
            doc = json.loads((folder / "model.json").read_text())
        except FileNotFoundError as exc:
            raise RegistryError(f"{folder} does not exist or has no model.json") from exc
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelRejected(f"{folder}/model.json is unreadable: {exc}") from exc
        meta = ModelMeta.from_json(doc, folder / "model.onnx")
        if verify:
            if not meta.onnx_path.exists():
                raise ModelRejected(f"{meta.onnx_path} is missing")
            actual = sha256_of(meta.onnx_path)
            if actual != meta.sha256:
                raise ModelRejected(
                    f"{meta.onnx_path} sha256 {actual[:12]}… does not match model.json "
                    f"{meta.sha256[:12]}…; the file is corrupted or was replaced"
                )
        return meta

    def write_version(
        self,
        model: str,
        version: str,
        onnx_file: Path,
        doc: dict[str, Any],
        extra: dict[str, Path] | None = None,
    ) -> Path:
        """Copy a verified export into the registry atomically; returns its folder.

        ``extra`` names further files to keep beside it (the trainer's weights.pt, for a
        warm start); scorers never read them.

        Steps: 1. write model.onnx, model.json and the extra files into
        ``<model>/.tmp-<version>``; 2. fsync them; 3. rename the folder to
        ``<model>/<version>`` in one step.
        """
        check_name("model", model)
        check_name("version", version)
        folder = self.root / model
        final = folder / version
        if final.exists():
            raise RegistryError(f"version {version} of {model} already exists in {self.root}")
        tmp = folder / f".tmp-{version}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        # 1. Both files into the hidden folder.
        shutil.copyfile(onnx_file, tmp / "model.onnx")
        doc = {**doc, "sha256": sha256_of(tmp / "model.onnx")}
        (tmp / "model.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        for name, path in (extra or {}).items():
            shutil.copyfile(path, tmp / name)
        # 2. Durable before visible.
        for name in ("model.onnx", "model.json", *(extra or {})):
            with open(tmp / name, "rb") as fh:
                os.fsync(fh.fileno())
        # 3. One rename makes the version visible.
        os.rename(tmp, final)
        return final

    def derive(
        self,
        model: str,
        version: str | None,
        changes: dict[str, Any],
        new: str | None = None,
    ) -> str:
        """A new version of ``model`` that serves ``version``'s network (the promoted one if
        None) with other anomaly parameters: ``changes`` maps fields of
        :class:`AnomalyParams` to values (another threshold, or a detection rule the
        version predates). Returns the new version, not promoted.

        Steps: 1. load and verify the source version; 2. merge ``changes`` into its
        anomaly parameters and validate them; 3. write the new version with the same ONNX
        file and every other file of the source (write_version: atomic), recording
        ``derived_from`` (the source version and the changes).
        """
        # 1. The source, verified.
        src = self.meta(model, version)
        # 2. The merged parameters, as the scorer will read them.
        checked = _checked_changes(src.anomaly, changes)
        anomaly = {**src.anomaly.to_json(), **checked}
        try:
            AnomalyParams.from_json(anomaly)
        except (TypeError, ValueError) as exc:
            raise RegistryError(f"these anomaly parameters are refused: {exc}") from exc
        # 3. A new version beside it (a second derive within the same second gets a suffix).
        if new is None:
            new = stem = new_version()
            for i in range(1, 1000):
                if not (self.root / model / new).exists():
                    break
                new = f"{stem}-{i}"
        folder = src.onnx_path.parent
        extra = {
            p.name: p for p in folder.iterdir() if p.is_file() and p.name not in _VERSION_FILES
        }
        doc = {
            **src.raw,
            "version": new,
            "anomaly": anomaly,
            "derived_from": {"version": src.version, "anomaly": checked},
        }
        self.write_version(model, new, src.onnx_path, doc, extra)
        return new

    def promote(self, model: str, version: str) -> None:
        """Make ``version`` the one scorers serve; CURRENT is replaced atomically."""
        self.meta(model, version)  # refuse to promote a broken version
        folder = self.root / model
        self._write_atomically(folder / "CURRENT", version + "\n")
        with open(folder / "HISTORY", "a") as fh:
            fh.write(version + "\n")

    def rollback(self, model: str) -> str:
        """Promote the version promoted before the current one; returns it."""
        current = self.current(model)
        previous = [v for v in self.history(model) if v != current]
        if not previous:
            raise RegistryError(f"model {model!r} has no earlier promoted version to roll back to")
        target = previous[-1]
        self.promote(model, target)
        return target

    def cleanup_tmp(self, model: str) -> None:
        """Remove temporary folders left by a crashed write."""
        folder = self.root / model
        if folder.is_dir():
            for p in folder.glob(".tmp-*"):
                shutil.rmtree(p, ignore_errors=True)
