"""The compiled hot path: which modules mypyc compiles, and whether a checkout's build matches its sources.

The fold, the tier-1 decode and the rolling windows' payload run per event; compiled by mypyc (the
compiler mypy ships, as black and mypy itself are built) they cost about a third less CPU per event
(docs/performance.md, "The compiled hot path"). The Python sources stay the reference: every module
here runs as written when no build is present, and tests/unit/core/test_compiled.py holds the compiled
build to the same results on the benchmark's corpora and on malformed input.

In a checkout, `./scripts/compile` builds the modules in place (an extension module beside each source,
which Python imports before the source) and records each source's SHA-256 in RECORD. A source edited
after its build would then be shadowed by stale code, silently: `stale()` names such modules, and the
worker and the test suite refuse to start with them. An installed wheel has no RECORD: it was built from
its own sources in one step (setup.py, ECOMIND_STREAMS_COMPILE=1), so nothing there can drift.

python -m core.compiled            # print each module's state: compiled, pure or stale
python -m core.compiled --record   # after a build: write RECORD for the sources as they are now
python -m core.compiled --stale    # exit 1 when a build is missing or does not match the sources
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import json
import sys
from functools import cache
from pathlib import Path

HOT_MODULES = ("agents.fold", "core.decode", "tables.windows")
# mypyc's shared library for the modules above (setup.py names it): in a package of the project, so that
# an editable install and a wheel import it as they import the modules.
GROUP = "core.hot_path__mypyc"
ROOT = Path(__file__).resolve().parent.parent
RECORD = ROOT / "build" / "compiled-sources.json"


def source_path(module: str, root: Path = ROOT) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def built_paths(module: str, root: Path = ROOT) -> list[Path]:
    """The extension modules Python would import for `module` instead of its source."""
    source = source_path(module, root)
    return [p for suffix in importlib.machinery.EXTENSION_SUFFIXES if (p := source.with_suffix(suffix)).exists()]


def build_files(root: Path = ROOT) -> list[Path]:
    """Every file a build left in the checkout: the modules' extensions and their shared library."""
    return [p for module in (*HOT_MODULES, GROUP) for p in built_paths(module, root)]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def states(root: Path = ROOT, record: Path | None = None) -> dict[str, str]:
    """module -> "compiled", "pure" (no build: the source runs) or "stale" (a build its source no longer matches)."""
    record = record if record is not None else root / "build" / "compiled-sources.json"
    recorded: dict[str, str] = json.loads(record.read_text()) if record.exists() else {}
    out = {}
    for module in HOT_MODULES:
        if not built_paths(module, root):
            out[module] = "pure"
        elif recorded and recorded.get(module) != sha256(source_path(module, root)):
            out[module] = "stale"
        else:
            out[module] = "compiled"
    return out


def stale(root: Path = ROOT, record: Path | None = None) -> list[str]:
    return [m for m, state in states(root, record).items() if state == "stale"]


def stale_message(modules: list[str]) -> str:
    return (
        f"the compiled hot path is older than its sources ({', '.join(modules)}): "
        "run ./scripts/compile to rebuild it, or ./scripts/compile --clean to run the sources as written"
    )


@cache
def hot_path() -> str:
    """What runs the hot path in this process: "compiled", "python" (the sources) or "mixed"."""
    compiled = {Path(importlib.import_module(name).__file__ or "").suffix != ".py" for name in HOT_MODULES}
    return "mixed" if len(compiled) > 1 else "compiled" if compiled == {True} else "python"


def write_record(root: Path = ROOT, record: Path | None = None) -> None:
    record = record if record is not None else root / "build" / "compiled-sources.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({m: sha256(source_path(m, root)) for m in HOT_MODULES}, indent=2) + "\n")


def main(argv: list[str]) -> int:
    if "--record" in argv:
        write_record()
        return 0
    found = states()
    if "--stale" in argv:
        return 0 if all(state == "compiled" for state in found.values()) else 1
    for module, state in found.items():
        print(f"{module}: {state}")
    if not stale():
        print(f"this process runs: {hot_path()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
