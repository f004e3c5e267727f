"""The wheel's build: pyproject.toml says everything but this. With ECOMIND_STREAMS_COMPILE=1 (the image's
build stage and ./scripts/compile set it) the hot path's modules (core/compiled.py) are compiled by mypyc,
beside their sources, with a module recording what they were compiled from; without it the wheel is pure
Python, as before."""

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

from setuptools import setup

ext_modules = []
options = {}
if os.environ.get("ECOMIND_STREAMS_COMPILE") == "1":
    try:
        from mypyc.build import mypycify
    except ImportError:
        raise SystemExit(
            "ECOMIND_STREAMS_COMPILE=1 needs mypy (mypyc) where the wheel is built: install requirements/compile.txt "
            "and build with --no-build-isolation"
        ) from None
    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here))
    from core.compiled import DIGEST_MODULE, HOT_MODULES, source_path, write_digest_module

    write_digest_module(here)
    sources = [str(source_path(m, here).relative_to(here)) for m in (*HOT_MODULES, DIGEST_MODULE)]
    # The modules' shared library inside a package of the project (core/hot_path__mypyc.*.so), not at the top
    # level, where an editable install or a wheel's neighbours could not import or would clash with it.
    ext_modules = mypycify(sources, opt_level="3", group_name="core.hot_path")
    # A fresh build folder: one left by an earlier build would be packed into the wheel with this one.
    build_base = tempfile.mkdtemp(prefix="ecomind-streams-build-")
    atexit.register(shutil.rmtree, build_base, True)
    options = {"build": {"build_base": build_base}}

setup(ext_modules=ext_modules, options=options)
