"""The naive baseline, written the way tutorials do it (kept naive on purpose).

One KafkaConsumer iterated event by event, one torch forward at batch 1 per event,
LSTM state in a dict, one ``send`` per output. Used by ``statecast bench``.

    python benchmarks/naive_consumer.py BOOTSTRAP INPUT OUTPUT GROUP EVENTS
"""

from __future__ import annotations

import json
import sys
import time

import torch
from kafka import KafkaConsumer, KafkaProducer


def main() -> int:
    bootstrap, topic, out_topic, group, events = sys.argv[1:6]
    torch.set_num_threads(1)
    lstm = torch.nn.LSTM(1, 64, num_layers=2, batch_first=True)
    head = torch.nn.Linear(64, 5)
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=True,
    )
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    state: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    n, target = 0, int(events)
    started = None
    for msg in consumer:
        if started is None:
            started = time.monotonic()
        event = json.loads(msg.value)
        sid = event["stream_id"]
        x = torch.tensor([[[float(event["value"])]]])
        with torch.no_grad():
            out, hc = lstm(x, state.get(sid))
            forecast = head(out[0, -1]).tolist()
        state[sid] = hc
        producer.send(
            out_topic,
            key=msg.key,
            value=json.dumps({"stream_id": sid, "ts": event["ts"], "forecast": forecast}).encode(),
        )
        n += 1
        if n >= target:
            break
    producer.flush()
    elapsed = time.monotonic() - (started or time.monotonic())
    with open("/proc/self/status") as status:
        hwm = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
    print(json.dumps({"events": n, "seconds": elapsed, "peak_rss_bytes": hwm}))
    consumer.close()
    producer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
