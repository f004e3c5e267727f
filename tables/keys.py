"""Redis key layout. Every key shares one hash tag, so a batch's keys live in one cluster slot."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    app_id: str

    @property
    def prefix(self) -> str:
        return "{" + self.app_id + "}"

    def key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    @property
    def offsets(self) -> str:
        return self.key("offsets")

    @property
    def leader(self) -> str:
        return self.key("leader")

    def org(self, org: str) -> str:
        return self.key(f"org:{org}")

    def day(self, day: str, name: str) -> str:
        return self.key(f"day:{day}:{name}")


def offset_field(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"
