"""Declares the C extension mmarray._core; everything else lives in pyproject.toml."""

import glob
import os

import numpy as np
from setuptools import Extension, setup

extra = ["-std=c11", "-O2", "-fvisibility=hidden", "-pthread"]
extra += os.environ.get("MMARRAY_CFLAGS", "").split()

setup(
    ext_modules=[
        Extension(
            "mmarray._core",
            # every .c under src/ (src/select/ included); the template that dtypes.c
            # includes once per dtype is a header, so it is not compiled on its own
            sources=sorted(glob.glob("src/**/*.c", recursive=True)),
            depends=sorted(glob.glob("src/**/*.h", recursive=True)),
            include_dirs=[np.get_include(), "src"],
            define_macros=[
                # One build runs on numpy 1.25+ and 2.x.
                ("NPY_TARGET_VERSION", "NPY_1_25_API_VERSION"),
                ("NPY_NO_DEPRECATED_API", "NPY_1_25_API_VERSION"),
                ("_GNU_SOURCE", "1"),
            ],
            extra_compile_args=extra,
            extra_link_args=["-pthread"],
        )
    ],
)
