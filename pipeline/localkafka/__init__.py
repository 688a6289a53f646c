"""A managed single-node Apache Kafka broker (KRaft) assembled from Maven Central jars.

No Docker and no Apache mirrors: :mod:`.jars` resolves the broker's runtime
classpath with Maven, :mod:`.broker` formats storage and runs ``kafka.Kafka``
as a plain JVM process bound to loopback.
"""

from pipeline.localkafka.broker import BrokerStatus, LocalBroker
from pipeline.localkafka.jars import fetch_jars

__all__ = ["BrokerStatus", "LocalBroker", "fetch_jars"]
