"""The wheel's build: pyproject.toml says everything but this. With ECOMIND_STREAMS_COMPILE=1 (the image's
build stage sets it) the hot path's modules (core/compiled.py) are compiled by mypyc into the wheel,
beside their sources; without it the wheel is pure Python, as before."""

import os
import sys

from setuptools import setup

ext_modules = []
if os.environ.get("ECOMIND_STREAMS_COMPILE") == "1":
    try:
        from mypyc.build import mypycify
    except ImportError:
        raise SystemExit(
            "ECOMIND_STREAMS_COMPILE=1 needs mypy (mypyc) where the wheel is built: install requirements/compile.txt "
            "and build with --no-build-isolation"
        ) from None

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from core.compiled import HOT_MODULES

    # The modules' shared library inside a package of the project (core/hot_path__mypyc.*.so), not at the top
    # level, where an editable install or a wheel's neighbours could not import or would clash with it.
    sources = [m.replace(".", "/") + ".py" for m in HOT_MODULES]
    ext_modules = mypycify(sources, opt_level="3", group_name="core.hot_path")

setup(ext_modules=ext_modules)
