"""Shared fixtures: one real Kafka broker per test session, unique topics and groups per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from pipeline.config import BACKENDS, KafkaConfig, LocalKafkaConfig
from pipeline.kafka_io import ensure_topic
from pipeline.localkafka import LocalBroker
from tests.kafka_helpers import free_port_pair, ports_free

REPO = Path(__file__).resolve().parents[1]
TEST_PORT = int(os.environ.get("STATECAST_TEST_KAFKA_PORT", "19092"))

# `make test` runs the broker tests and the others side by side on two cores: an example's
# time says how busy the machine was, not how fast the code is (no per-example deadline).
settings.register_profile("statecast", deadline=None)
settings.load_profile("statecast")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``slow_with("kafka-python")``: that backend's run of the test is ``slow`` (it goes to
    `make test-slow`; the other backend's run stays in `make test`)."""
    for item in items:
        mark = item.get_closest_marker("slow_with")
        callspec = getattr(item, "callspec", None)
        if mark and callspec and callspec.params.get("backend_config") in mark.args:
            item.add_marker(pytest.mark.slow)


def _test_config(port: int) -> LocalKafkaConfig:
    return LocalKafkaConfig(
        home=REPO / ".statecast",
        port=port,
        controller_port=port + 1,
        data_dir=REPO / ".statecast" / f"kafka-test-{port}",
    )


@pytest.fixture(scope="session")
def broker() -> Iterator[LocalBroker]:
    """The real Apache Kafka broker (KRaft) the integration suite talks to.

    Started from the project's own Maven-fetched jars on a test port, reused if it
    already runs, stopped at the end of the session if this session started it.
    """
    port = TEST_PORT
    local = LocalBroker(_test_config(port))
    if not local.status().running and not ports_free(port):
        # Another broker (another checkout's test run, say) holds the default test port:
        # use a free pair rather than fail.
        port = free_port_pair()
        local = LocalBroker(_test_config(port))
    was_running = local.status().running
    if not was_running:
        # Every test makes its own topics: a data folder kept from earlier sessions grows
        # without bound (hundreds of MB after a few hundred runs), and a broker restart
        # then takes long enough to load its partitions that tests see empty metadata.
        local.wipe()
    local.up()
    yield local
    if not was_running:
        local.down()


@pytest.fixture(scope="session")
def kafka_config(broker: LocalBroker) -> KafkaConfig:
    return KafkaConfig(bootstrap=broker.config.bootstrap)


@pytest.fixture(params=BACKENDS)
def backend_config(request: pytest.FixtureRequest, broker: LocalBroker) -> KafkaConfig:
    """The test broker through each Kafka client backend in turn: modules that test the
    scorer's Kafka path rebind ``kafka_config`` to this, so they run against both."""
    return KafkaConfig(bootstrap=broker.config.bootstrap, backend=request.param)


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Names no other test (or earlier run) uses: ``<prefix>-<test>-<uuid8>``."""
    test = request.node.name.replace("[", "-").replace("]", "")[:40]

    def make(prefix: str) -> str:
        return f"{prefix}-{test}-{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
def topic_factory(
    kafka_config: KafkaConfig, unique_name: Callable[[str], str]
) -> Callable[..., str]:
    """Create a uniquely named topic: ``topic_factory(partitions=4, config={...})``."""

    def make(prefix: str = "t", partitions: int = 1, config: dict[str, str] | None = None) -> str:
        name = unique_name(prefix)
        ensure_topic(kafka_config, name, partitions, config)
        return name

    return make


@pytest.fixture
def group_factory(unique_name: Callable[[str], str]) -> Callable[[], str]:
    return lambda: unique_name("g")


@pytest.fixture(scope="session")
def tiny_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with one small, really trained model ``tiny`` (synthetic data, ~10 s)."""
    from training.config import TrainConfig
    from training.synthetic import generate, write_csv
    from training.trainer import Trainer, TrainJob

    root = tmp_path_factory.mktemp("registry")
    data = write_csv(generate(streams=6, length=800, seed=3), root / "data")
    job = TrainJob(
        data=tuple(data), registry=root / "models", model="tiny", plot=False, progress=False
    )
    cfg = TrainConfig(hidden=16, layers=2, horizon=3, max_epochs=2, segment=128, bptt=32, burn_in=8)
    Trainer(job, cfg).run()
    return root / "models"
