"""Quix Streams doing the same work: per-org daily counts (raw) and kWh sums (enriched).

Run as a process by the benchmark; progress goes to a file that the benchmark polls.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta
from pathlib import Path

from quixstreams import Application


def main() -> None:
    progress = Path(os.environ["QUIX_PROGRESS_FILE"])
    seen = {"n": 0, "first": 0.0, "last": 0.0}

    def tick(value: object) -> None:
        now = time.monotonic()
        if not seen["first"]:
            seen["first"] = now
        seen["n"] += 1
        seen["last"] = now

    def report() -> None:
        while True:
            progress.write_text(f"{seen['n']} {seen['last'] - seen['first']:.3f}")
            time.sleep(0.5)

    app = Application(
        broker_address=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
        consumer_group=os.environ["QUIX_GROUP"],
        auto_offset_reset="earliest",
        state_dir=os.environ["QUIX_STATE_DIR"],
    )
    raw = app.dataframe(app.topic(os.environ["QUIX_RAW_TOPIC"], value_deserializer="json"))
    raw = raw.group_by("org_id")
    raw.tumbling_window(timedelta(days=1)).count().current().update(tick)
    enriched = app.dataframe(app.topic(os.environ["QUIX_ENRICHED_TOPIC"], value_deserializer="json"))
    enriched = enriched.group_by("org_id")
    enriched.apply(lambda v: v["kwh"]).tumbling_window(timedelta(days=1)).sum().current().update(tick)
    threading.Thread(target=report, daemon=True).start()
    app.run()


if __name__ == "__main__":
    main()
