"""Kafka wire types aiokafka lacks, shared by the tap (topic IDs, Metadata v12) and the lag probe
(ConsumerGroupDescribe): one definition for both."""

from __future__ import annotations

from io import BytesIO

from aiokafka.protocol.abstract import AbstractType


class Uuid(AbstractType[bytes]):  # type: ignore[misc]  # aiokafka ships no type hints
    """16 raw bytes (topic ids); only read, never needed as text."""

    @classmethod
    def encode(cls, value: bytes) -> bytes:
        if len(value) != 16:
            raise ValueError(f"a uuid is 16 bytes, not {len(value)}")
        return value

    @classmethod
    def decode(cls, data: BytesIO) -> bytes:
        value = data.read(16)
        if len(value) != 16:
            raise ValueError("Buffer underrun decoding uuid")
        return value
