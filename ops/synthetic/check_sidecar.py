#!/usr/bin/env python3
"""Synthetic check of an EcoMind Streams replica: /health and /ready within a latency budget.

    check_sidecar.py http://streams-1:6066 [--budget-ms 500]

Exit 0 when both answer 200 within the budget; 1 otherwise, with one line per failed check.
Standard library only, so it runs from any probe host (cron, a blackbox runner, a CI job).
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request


def probe(url: str, budget_s: float) -> str | None:
    """None when the URL answers 200 within the budget, else what went wrong."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=max(budget_s * 4, 1.0)) as resp:
            status, body = resp.status, resp.read(2048)
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read(2048)
    except OSError as exc:
        return f"{url}: unreachable ({exc})"
    elapsed_s = time.monotonic() - started
    if status != 200:
        return f"{url}: HTTP {status} {body.decode(errors='replace').strip()}"
    if elapsed_s > budget_s:
        return f"{url}: {elapsed_s * 1000:.0f} ms, over the {budget_s * 1000:.0f} ms budget"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base_url")
    parser.add_argument("--budget-ms", type=float, default=500.0)
    args = parser.parse_args(argv)
    base = args.base_url.rstrip("/")
    failures = [f for f in (probe(f"{base}{path}", args.budget_ms / 1000) for path in ("/health", "/ready")) if f]
    for failure in failures:
        print(failure, file=sys.stderr)
    if not failures:
        print(f"{base}: healthy and ready")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
