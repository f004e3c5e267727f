"""Rewrite tests/golden/metrics.prom from the fixture: `.venv/bin/python -m tests.golden.regenerate`."""

from __future__ import annotations

from tests.golden.exposition import GOLDEN_FILE, golden


def main() -> None:
    GOLDEN_FILE.write_bytes(golden())
    print(f"wrote {GOLDEN_FILE}")


if __name__ == "__main__":
    main()
