"""Format, start, stop and inspect one local KRaft broker (broker + controller in one JVM).

Everything the broker writes lives in one data folder (``LocalKafkaConfig.resolved_data_dir``):
``server.properties``, ``log4j2.properties``, ``logs/`` (the partitions), ``broker.log``
(the JVM's output), ``gc.log`` (the collector's pauses) and ``broker.pid``. ``down`` keeps
the data, so ``up`` after ``down`` is a broker restart with every topic and offset intact.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from pipeline.config import LocalKafkaConfig
from pipeline.errors import BrokerError
from pipeline.localkafka.jars import fetch_jars

__all__ = ["BrokerStatus", "LocalBroker"]

_LOG4J = """status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
"""


@dataclasses.dataclass(frozen=True)
class BrokerStatus:
    """What ``statecast kafka status`` reports."""

    running: bool
    pid: int | None
    bootstrap: str
    data_dir: Path
    log_path: Path

    def describe(self) -> str:
        state = f"running (pid {self.pid})" if self.running else "not running"
        return (
            f"kafka {state}\nbootstrap={self.bootstrap}\ndata={self.data_dir}\nlog={self.log_path}"
        )


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _is_broker_pid(pid: int) -> bool:
    """True if ``pid`` is alive and is a ``kafka.Kafka`` JVM (guards against reused pids)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"kafka.Kafka" in cmdline


class LocalBroker:
    """One managed broker, described by a :class:`LocalKafkaConfig`."""

    def __init__(self, config: LocalKafkaConfig) -> None:
        self.config = config
        self.data_dir = config.resolved_data_dir.resolve()
        self.log_path = self.data_dir / "broker.log"
        self.pid_path = self.data_dir / "broker.pid"
        # The collector's pauses, one line each, with the JVM's uptime (two files of 10 MB).
        self.gc_log_path = self.data_dir / "gc.log"

    # -- inspection -----------------------------------------------------------------

    def pid(self) -> int | None:
        """The pid of the running broker, or None (a stale pid file is ignored).

        A broker of this data folder whose pid file was lost is found by its command line.
        """
        try:
            pid = int(self.pid_path.read_text().strip())
            if _is_broker_pid(pid):
                return pid
        except (OSError, ValueError):
            pass
        marker = str(self.data_dir / "server.properties").encode()
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    cmdline = (proc / "cmdline").read_bytes()
                except OSError:
                    continue
                if b"kafka.Kafka" in cmdline and marker in cmdline:
                    self.pid_path.write_text(f"{proc.name}\n")
                    return int(proc.name)
        return None

    def status(self) -> BrokerStatus:
        pid = self.pid()
        running = pid is not None and _port_open(self.config.host, self.config.port)
        return BrokerStatus(running, pid, self.config.bootstrap, self.data_dir, self.log_path)

    # -- lifecycle ------------------------------------------------------------------

    def up(self) -> BrokerStatus:
        """Start the broker, or return the running one. Idempotent.

        Steps: 1. reuse a running broker; 2. check Java and the ports; 3. fetch jars;
        4. write config and format storage once; 5. start the JVM; 6. wait until
        the client port accepts connections (it opens only once the broker is unfenced).
        """
        cfg = self.config
        # 1. A running broker of ours is reused as it is.
        current = self.status()
        if current.running:
            return current
        if current.pid is not None:
            # Started but not yet listening (e.g. a concurrent `up`): wait for it.
            return self._wait_ready(current.pid, started=time.monotonic())
        # 2. Preconditions, each with one clear error line.
        java = shutil.which("java")
        if java is None:
            raise BrokerError(
                "Java is not installed: install a JDK 17+ (apt-get install openjdk-17-jre-headless)"
            )
        for port in (cfg.port, cfg.controller_port):
            if not _port_free(cfg.host, port):
                raise BrokerError(
                    f"port {cfg.host}:{port} is taken by another process; stop it or choose "
                    f"another port (--port/--controller-port); log: {self.log_path}"
                )
        # 3. Jars from Maven Central (cached).
        libs = fetch_jars(cfg.home.resolve(), cfg.kafka_version)
        # 4. Config files, and storage formatted once per data folder.
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self._write_config()
        if not (self.data_dir / "logs" / "meta.properties").exists():
            self._format(java, libs, props)
        # 5. The JVM, in its own session so that Ctrl-C in a terminal does not kill it;
        #    G1 with the options of Kafka's own start script (KAFKA_JVM_PERFORMANCE_OPTS of
        #    bin/kafka-run-class.sh) but its pause-time goal from the config, its pauses
        #    logged to gc.log.
        cmd = [
            java,
            f"-Xms{cfg.heap_mb}m",
            f"-Xmx{cfg.heap_mb}m",
            "-XX:+UseG1GC",
            f"-XX:MaxGCPauseMillis={cfg.gc_pause_target_ms}",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            f"-Xlog:gc:file={self.gc_log_path}:uptime:filecount=2,filesize=10M",
            "-XX:TieredStopAtLevel=1" if cfg.heap_mb < 256 else "-XX:+UseStringDeduplication",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            "kafka.Kafka",
            str(props),
        ]
        started = time.monotonic()
        pid = self._spawn(cmd)
        self.pid_path.write_text(f"{pid}\n")
        # 6. Ready when the client port opens.
        return self._wait_ready(pid, started, child=True)

    def down(self) -> bool:
        """Stop the broker with SIGTERM (clean shutdown), SIGKILL after the timeout.

        Returns True if a broker was stopped. Data is kept.
        """
        pid = self.pid()
        if pid is None:
            self.pid_path.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.stop_timeout_s
        while time.monotonic() < deadline and _is_broker_pid(pid):
            self._reap(pid)
            time.sleep(0.1)
        if _is_broker_pid(pid):
            os.kill(pid, signal.SIGKILL)
            while _is_broker_pid(pid):
                self._reap(pid)
                time.sleep(0.05)
        self.pid_path.unlink(missing_ok=True)
        return True

    def wipe(self) -> None:
        """Stop the broker and delete its data folder (all topics)."""
        self.down()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    # -- internals ------------------------------------------------------------------

    def _spawn(self, cmd: list[str]) -> int:
        """Start the JVM detached (own session, output to the log) and return its pid.

        posix_spawn rather than Popen: the broker outlives this object on purpose, and
        a Popen left running would warn when garbage-collected.
        """
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            return os.posix_spawn(
                cmd[0],
                cmd,
                dict(os.environ),
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, log_fd, 1),
                    (os.POSIX_SPAWN_DUP2, log_fd, 2),
                ],
                setsid=True,
            )
        finally:
            os.close(log_fd)

    @staticmethod
    def _exited(pid: int) -> bool:
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return not _is_broker_pid(pid)
        return done == pid

    @staticmethod
    def _reap(pid: int) -> None:
        """Collect the exit status if the broker is our child, so no zombie is left."""
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)

    def _wait_ready(self, pid: int, started: float, child: bool = False) -> BrokerStatus:
        cfg = self.config
        deadline = started + cfg.start_timeout_s
        while time.monotonic() < deadline:
            if _port_open(cfg.host, cfg.port):
                return BrokerStatus(True, pid, cfg.bootstrap, self.data_dir, self.log_path)
            # Our own child: only waitpid can say it exited (right after the spawn,
            # /proc/<pid>/cmdline may still show this process, before the exec).
            exited = self._exited(pid) if child else not _is_broker_pid(pid)
            if exited:
                self.pid_path.unlink(missing_ok=True)
                raise BrokerError(
                    f"Kafka broker exited during start-up: {self._last_error()}; log: {self.log_path}"
                )
            time.sleep(0.1)
        raise BrokerError(
            f"Kafka broker did not accept clients on {cfg.bootstrap} within "
            f"{cfg.start_timeout_s:.0f}s; log: {self.log_path}"
        )

    def _last_error(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "no log written"
        for line in reversed(lines):
            if "ERROR" in line or "Exception" in line:
                return line.strip()[:300]
        return lines[-1].strip()[:300] if lines else "no log written"

    def _write_config(self) -> Path:
        cfg = self.config
        listeners = (
            f"PLAINTEXT://{cfg.host}:{cfg.port},CONTROLLER://{cfg.host}:{cfg.controller_port}"
        )
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{cfg.host}:{cfg.controller_port}",
            "listeners": listeners,
            "advertised.listeners": f"PLAINTEXT://{cfg.host}:{cfg.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir / "logs"),
            "num.partitions": "1",
            # A single node: internal topics cannot have 3 replicas.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # Tests and demos create groups constantly; the 3 s default delay would dominate.
            "group.initial.rebalance.delay.ms": "0",
            # A transaction left open by a killed scorer holds back every read_committed
            # reader (outputs, a restore) until the coordinator aborts it, at its first
            # scan after the transaction timeout: scan every second, not every 10.
            "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
            "auto.create.topics.enable": "true",
            "log.retention.hours": "168",
            "log.cleaner.enable": "true",
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
            "message.max.bytes": str(8 * 1024 * 1024),
        }
        path = self.data_dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.data_dir / "log4j2.properties").write_text(_LOG4J)
        return path

    def _format(self, java: str, libs: Path, props: Path) -> None:
        cluster_id = _cluster_id()
        cmd = [
            java,
            "-Xmx256m",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            cluster_id,
            "-c",
            str(props),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        with open(self.log_path, "a") as log:
            log.write(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise BrokerError(
                f"formatting Kafka storage failed (exit {proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()[-300:]}; log: {self.log_path}"
            )


def _cluster_id() -> str:
    """A random Kafka cluster id (base64url of a UUID), never starting with "-": the storage
    tool would read that as an option and fail (1 run in 64), as Kafka's own
    ``Uuid.randomUuid`` avoids."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid
