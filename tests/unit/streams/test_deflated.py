"""/metrics gzipped from a per-scrape part and the lag's part compressed once per probe cycle."""

import gzip
import random
import zlib

import pytest

from streams.deflated import deflated, gzip_joined
from streams.web.server import encode_metrics, encode_parts


def lag_text(groups: int) -> bytes:
    rnd = random.Random(7)
    return "".join(
        f'ecomind_consumergroup_lag{{group="g{g}",topic="t{g // 4}",partition="{p}"}} {rnd.randint(0, 10**6)}.0\n'
        for g in range(groups)
        for p in range(10)
    ).encode()


@pytest.mark.parametrize("sizes", [(0, 0), (1, 0), (0, 1), (300, 20_000), (5, 5)])
def test_joined_parts_are_one_gzip_member_of_their_texts(sizes: tuple[int, int]) -> None:
    head, lag = b"# HELP up x\n# TYPE up gauge\nup 1.0\n" * sizes[0], lag_text(sizes[1] // 10)
    body = gzip_joined([deflated(head), deflated(lag)])
    assert gzip.decompress(body) == head + lag
    # One member, nothing after it: clients that stop at the first member's end see the whole body.
    reader = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert reader.decompress(body) == head + lag and reader.eof and reader.unused_data == b""


def test_a_scrape_compresses_only_its_own_part() -> None:
    head, lag = b"up 1.0\n", lag_text(2_000)
    part = deflated(lag)
    body, headers = encode_parts(head, part, "gzip, deflate")
    same, same_headers = encode_metrics(head + lag, "gzip, deflate")
    assert headers == same_headers and headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body) == gzip.decompress(same) == head + lag
    assert part.blocks in body  # the cycle's blocks as they are, not compressed again
    assert len(body) < len(lag) / 5


@pytest.mark.parametrize("accept", [None, "identity", "gzip;q=0"])
def test_plain_when_gzip_is_not_accepted(accept: str | None) -> None:
    body, headers = encode_parts(b"up 1.0\n", deflated(b"lag 2.0\n"), accept)
    assert body == b"up 1.0\nlag 2.0\n" and "Content-Encoding" not in headers
