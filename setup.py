"""Build hook for fastxent's compiled backend; all metadata lives in pyproject.toml.

Every ``fastxent/**/*.pyx`` becomes an extension module of the same dotted name, compiled with
OpenMP. With no .pyx file (the state before the Cython backend lands) nothing is compiled and
Cython is not even imported, so the package stays pure Python.

Compiler flags are portable on purpose: no ``-ffast-math`` (it implies finite-math-only, which
breaks the -inf initialised maxima and the inf/NaN handling of the losses) and no ``-march``
(a binary built with ``-march=x86-64-v4`` dies on CPUs without AVX-512).
Set ``FASTXENT_NO_EXTENSIONS=1`` to build without the compiled backend.
"""

import os
import sys
from pathlib import Path

from setuptools import Extension, setup


def _openmp_flags():
    if sys.platform == "win32":
        return ["/openmp"], []
    if sys.platform == "darwin":  # Apple clang needs libomp and the preprocessor flag
        return ["-Xpreprocessor", "-fopenmp"], ["-lomp"]
    return ["-fopenmp"], ["-fopenmp"]


def _extensions():
    sources = sorted(Path("fastxent").rglob("*.pyx"))
    if not sources or os.environ.get("FASTXENT_NO_EXTENSIONS"):
        return []
    from Cython.Build import cythonize

    compile_args, link_args = _openmp_flags()
    if sys.platform != "win32":
        compile_args = ["-O3", *compile_args]
    extensions = [
        Extension(
            ".".join(source.with_suffix("").parts),
            [str(source)],
            extra_compile_args=compile_args,
            extra_link_args=link_args,
        )
        for source in sources
    ]
    return cythonize(extensions, compiler_directives={"language_level": "3"})


setup(ext_modules=_extensions())
