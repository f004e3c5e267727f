"""Traffic generator: plays EcoMind's gateway and enrichment worker against a broker.

The gateway writes raw LLM-call events; the worker, a consumer group of its own, reads them,
adds kWh and CO2 and writes enriched events, committing its offsets a little behind what it has
read so that its lag is visible on the sidecar's metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import signal
import time
from datetime import UTC, datetime

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

log = logging.getLogger("ecomind.traffic")

PROVIDERS = {
    "openai": ("gpt-4o", "gpt-4o-mini"),
    "anthropic": ("claude-sonnet", "claude-haiku"),
    "google": ("gemini-pro",),
}
KWH_PER_1K_TOKENS = {
    "gpt-4o": 0.0009,
    "gpt-4o-mini": 0.0002,
    "claude-sonnet": 0.0008,
    "claude-haiku": 0.00015,
    "gemini-pro": 0.0006,
}
GRID_KG_CO2_PER_KWH = 0.4


def raw_event(rng: random.Random, orgs: int, users: int, now_s: float) -> dict[str, object]:
    provider = rng.choice(sorted(PROVIDERS))
    return {
        "org_id": f"org_{rng.randrange(orgs):04d}",
        "user_id": f"user_{rng.randrange(users):06d}",
        "provider": provider,
        "model": rng.choice(PROVIDERS[provider]),
        "tokens_in": rng.randrange(10, 4000),
        "tokens_out": rng.randrange(10, 2000),
        "ts": datetime.fromtimestamp(now_s, UTC).isoformat().replace("+00:00", "Z"),
    }


def enrich(event: dict[str, object]) -> dict[str, object]:
    tokens = int(event["tokens_in"]) + int(event["tokens_out"])  # type: ignore[call-overload]
    kwh = round(tokens / 1000 * KWH_PER_1K_TOKENS.get(str(event["model"]), 0.0005), 9)
    return {**event, "kwh": kwh, "co2_kg": round(kwh * GRID_KG_CO2_PER_KWH, 9)}


async def gateway(
    bootstrap: str,
    topic: str,
    rate: float,
    orgs: int,
    users: int,
    seed: int,
    invalid_ratio: float,
    stop: asyncio.Event,
    truth_file: str | None = None,
) -> None:
    rng = random.Random(seed)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    sent = invalid = 0
    by_org_provider: dict[str, int] = {}
    pairs: set[tuple[str, str]] = set()
    started = time.monotonic()
    try:
        while not stop.is_set():
            due = int((time.monotonic() - started) * rate) - sent
            for _ in range(max(0, min(due, 5000))):
                if rng.random() < invalid_ratio:
                    value = b'{"org_id": "broken", "tokens_in": -1'
                    invalid += 1
                else:
                    event = raw_event(rng, orgs, users, time.time())
                    value = orjson.dumps(event)
                    key = f"{event['org_id']}/{event['provider']}"
                    by_org_provider[key] = by_org_provider.get(key, 0) + 1
                    pairs.add((str(event["org_id"]), str(event["user_id"])))
                await producer.send(topic, value)
                sent += 1
            await asyncio.sleep(0.05)
    finally:
        await producer.stop()  # flushes: everything counted below is on the broker
        if truth_file:
            truth = {
                "valid": sent - invalid,
                "invalid": invalid,
                "by_org_provider": by_org_provider,
                "orgs": len({o for o, _ in pairs}),
                "users": len(pairs),
            }
            with open(truth_file, "wb") as out:
                out.write(orjson.dumps(truth))


async def worker(
    bootstrap: str, raw_topic: str, enriched_topic: str, group: str, commit_delay_s: float, stop: asyncio.Event
) -> None:
    consumer = AIOKafkaConsumer(
        raw_topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await consumer.start()
    await producer.start()
    # Offsets read but not yet committed, with when they were read: committing late shows as lag.
    pending: list[tuple[float, dict[TopicPartition, int]]] = []
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=2000)
            read: dict[TopicPartition, int] = {}
            for tp, records in batch.items():
                for rec in records:
                    try:
                        event = orjson.loads(rec.value or b"")
                        await producer.send(enriched_topic, orjson.dumps(enrich(event)))
                    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                        pass  # the real worker dead-letters these; the sidecar counts them on events.raw
                    read[tp] = rec.offset + 1
            if read:
                pending.append((time.monotonic(), read))
            due = {}
            while pending and time.monotonic() - pending[0][0] >= commit_delay_s:
                due.update(pending.pop(0)[1])
            if due:
                await consumer.commit(due)
    finally:
        await producer.stop()
        await consumer.stop()


async def run(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(
            gateway(
                args.bootstrap,
                args.raw_topic,
                args.rate,
                args.orgs,
                args.users,
                args.seed,
                args.invalid_ratio,
                stop,
                args.truth_file,
            )
        )
    ]
    if not args.no_worker:
        tasks.append(
            asyncio.create_task(
                worker(args.bootstrap, args.raw_topic, args.enriched_topic, args.group, args.commit_delay, stop)
            )
        )
    # SIGTERM ends the run cleanly, so that the truth file is written after the last send.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await asyncio.gather(*tasks)
    finally:
        stop.set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--raw-topic", default="events.raw")
    parser.add_argument("--enriched-topic", default="events.enriched")
    parser.add_argument("--group", default="ecomind-worker", help="the enrichment worker's consumer group")
    parser.add_argument("--rate", type=float, default=200.0, help="raw events per second")
    parser.add_argument("--orgs", type=int, default=20)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--invalid-ratio", type=float, default=0.01)
    parser.add_argument("--commit-delay", type=float, default=3.0, help="seconds the worker commits behind")
    parser.add_argument("--no-worker", action="store_true")
    parser.add_argument("--truth-file", help="on exit, write what the gateway sent (counts, distinct pairs) as JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
