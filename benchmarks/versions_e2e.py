"""The scorer's maximum throughput with two model versions, side by side.

    .venv/bin/python benchmarks/versions_e2e.py --bootstrap 127.0.0.1:9092 \\
        --versions v20261201T070904Z,v20261205T114726Z [--events 60000] [--streams 2000] \\
        [--rounds 3] [--backend confluent-kafka] [--registry exported_models]

One pre-filled topic; each round runs one scorer process per version (alternating, each a
fresh consumer group reading the whole topic), as `statecast bench`'s statecast row does;
prints events/s per run and the median per version. Each version is served from a
registry of its own whose CURRENT names it (the version's folder linked, not copied), so
the scorer loads it exactly as it loads a promoted model.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.alternating import add_arguments, alternate_from  # noqa: E402


def _registry_of(source: Path, model: str, version: str, root: Path) -> Path:
    """A registry under ``root`` holding only ``version`` of ``model``, as its CURRENT."""
    folder = root / version / model
    folder.mkdir(parents=True)
    (folder / version).symlink_to((source / model / version).resolve())
    (folder / "CURRENT").write_text(f"{version}\n")
    (folder / "HISTORY").write_text(f"{version}\n")
    return root / version


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    ap.add_argument("--versions", required=True, help="A,B")
    ap.add_argument("--model", default="default")
    a = ap.parse_args()
    versions = [v.strip() for v in a.versions.split(",") if v.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        variants = {
            v: {"registry": str(_registry_of(a.registry, a.model, v, Path(tmp))), "model": a.model}
            for v in versions
        }
        alternate_from(a, variants, prefix="versions")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
