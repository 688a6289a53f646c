"""Resolve the Kafka broker's runtime jars from Maven Central into a local cache.

The cache is ``<home>/kafka/<version>/libs``; a ``.complete`` marker is written
last, so an interrupted fetch is redone rather than trusted.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from pipeline.errors import BrokerError

__all__ = ["LOG4J_VERSION", "fetch_jars", "jar_dir"]

LOG4J_VERSION = "2.24.3"

# kafka_2.13's POM carries server, storage, raft, coordinators, scala and slf4j-api.
# The release tarball adds a logging binding that no POM names: Kafka 4.1 uses
# slf4j 1.7, hence log4j's 1.x binding. kafka-tools is left out (it pulls Connect).
_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.statecast</groupId>
  <artifactId>local-kafka</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-api</artifactId>
      <version>{log4j}</version></dependency>
  </dependencies>
</project>
"""


def jar_dir(home: Path, version: str) -> Path:
    """Folder holding the broker classpath for ``version``."""
    return home / "kafka" / version / "libs"


def fetch_jars(home: Path, version: str) -> Path:
    """Return the classpath folder, resolving it with Maven first if it is not cached."""
    libs = jar_dir(home, version)
    marker = libs / ".complete"
    if marker.exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven (mvn) is not installed; install it (apt-get install maven)")
    work = libs.parent
    work.mkdir(parents=True, exist_ok=True)
    if libs.exists():
        shutil.rmtree(libs)
    (work / "pom.xml").write_text(_POM.format(kafka=version, log4j=LOG4J_VERSION))
    cmd = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(work / "pom.xml"),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={libs}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not any(libs.glob("kafka_2.13-*.jar")):
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        raise BrokerError(
            f"could not fetch Apache Kafka {version} jars from Maven Central "
            f"(mvn exit {proc.returncode}): {' | '.join(tail)}"
        )
    marker.write_text(version + "\n")
    return libs
