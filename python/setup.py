"""Builds the extension module postbox._postbox for the wheel (pyproject.toml holds the rest;
Debian's setuptools 66 still needs setup.py to declare a C extension).

It links the static library libpostbox.a, found in POSTBOX_LIBRARY (a path to the file) or in
../build/ (run `make` in the source tree first), and the header in POSTBOX_INCLUDE or
../include/."""
import os

from setuptools import Extension, setup

here = os.path.dirname(os.path.abspath(__file__))
top = os.path.dirname(here)
library = os.environ.get("POSTBOX_LIBRARY", os.path.join(top, "build", "libpostbox.a"))
include = os.environ.get("POSTBOX_INCLUDE", os.path.join(top, "include"))
if not os.path.exists(library):
    raise SystemExit("postbox: %s is missing; run `make` in %s first, or set POSTBOX_LIBRARY "
                     "to the path of libpostbox.a" % (library, top))

setup(
    ext_modules=[
        Extension(
            "postbox._postbox",
            sources=["src/_postbox.c"],
            include_dirs=[include],
            extra_objects=[library],
            extra_compile_args=["-O2", "-fvisibility=hidden"],
            libraries=["pthread"],
        )
    ],
)
