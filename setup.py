"""Build hook for fastxent's compiled backend; all metadata lives in pyproject.toml.

Every ``fastxent/**/*.pyx`` becomes an extension module of the same dotted name (the Cython
backend, ``fastxent/backends/cython``). The package is complete without them: when there is no C
compiler, no Cython, or a compile error, the build warns and installs the pure-Python package
(the Numba and NumPy backends); ``fastxent info`` then says the Cython backend is not built.
Set ``FASTXENT_NO_EXTENSIONS=1`` to skip the extensions on purpose.

Compiler flags (gcc/clang; each is tried on the compiler first and dropped if refused):

* ``-O3``: loop vectorisation. The float32 exp/log are the polynomials of ``fastxent/_math.py``
  written in C (``_scalar.pxd``), so they vectorise with any x86-64/aarch64 baseline: no
  ``-march`` (a binary built with ``-march=x86-64-v4`` dies on CPUs without AVX-512) and no
  glibc libmvec (which gcc only uses under ``-ffast-math``).
* ``-fno-math-errno -ffp-contract=fast -fno-trapping-math``: safe parts of ``-ffast-math``
  (FMA contraction, no errno, no trap semantics). *Not* ``-ffast-math``: it implies
  ``-ffinite-math-only``, under which the compiler deletes the ``x == x`` NaN tests and the
  -inf initialised maxima the losses rely on. *Not* ``-fassociative-math`` either (measured with
  gcc 12: it breaks the Cody-Waite range reduction of the vectorised float32 exp, relative error
  3.6e-6, even with ``__builtin_assoc_barrier``); ``FASTXENT_ASSOCIATIVE_MATH=1`` turns it on
  for experiments (only when the compiler has an arithmetic fence).
* ``-fno-tree-sink -fno-thread-jumps`` (gcc): without them gcc 12 sinks the exp polynomial into
  the ``x >= lo`` branch of its final select (and threads jumps across the selects), leaving
  control flow that if-conversion cannot remove: no element loop calling ``exp_poly`` vectorised
  ("control flow in loop"). Measured with ``-fopt-info-vec``.
* ``--param=max-inline-insns-single=2000 --param=inline-unit-growth=400`` (gcc, ``sigmoid``
  only): gcc's default limits kept ``focal_term`` a call inside the element loops of
  ``sigmoid.pyx`` that take targets, smoothing or clip, so they ran scalar (float32 sigmoid
  focal with dense targets 150 ms against Numba's 18 at 256 x 32768). Measured with
  ``-fopt-info-vec`` and ``-fopt-info-inline``.
* ``-fopenmp`` (compile and link): ``prange`` over rows. If the compiler has no OpenMP the
  extension is built serial (``fastxent info`` says so).

CPU variants (x86-64 with gcc/clang): each kernel module (every ``.pyx`` but ``_support``) is also
compiled from the same generated C with ``-march=x86-64-v3`` (AVX2, FMA) and ``-march=x86-64-v4``
(AVX-512) into ``fastxent/backends/cython/_x86_64_v3/`` and ``_x86_64_v4/``. The baseline modules
run everywhere; ``kernels.py`` imports a variant only when ``_support.cpu_level()`` (the running
CPU and OS, through ``__builtin_cpu_supports``) says it can run, so no binary ever executes an
instruction the CPU lacks. A variant whose flags the compiler refuses is skipped. Set
``FASTXENT_NO_CPU_VARIANTS=1`` to build the baseline only.
"""

import os
import platform
import shutil
import sys
import tempfile
import textwrap
import warnings
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

_FENCE_PROBE = textwrap.dedent("""
    #if defined(__clang__)
    #  if !__has_builtin(__arithmetic_fence)
    #    error no fence
    #  endif
    #  define FENCE(x) __arithmetic_fence(x)
    #else
    #  define FENCE(x) __builtin_assoc_barrier(x)
    #endif
    double f(double x, double y) { return FENCE(x - y) + y; }
    """)
#: CPU variant package -> extra compiler flags (x86-64 only; see the module docstring)
_CPU_VARIANTS = {
    "_x86_64_v4": ["-march=x86-64-v4", "-mtune=generic", "-mprefer-vector-width=512"],
    "_x86_64_v3": ["-march=x86-64-v3", "-mtune=generic"],
}
#: Extra flags per kernel module (its last dotted name), each kept only if the compiler takes it
_MODULE_FLAGS = {
    "sigmoid": ["--param=max-inline-insns-single=2000", "--param=inline-unit-growth=400"],
}
_OPENMP_PROBE = textwrap.dedent("""
    #include <omp.h>
    int f(void) { return omp_get_max_threads(); }
    """)


def _openmp_flags(compiler_type):
    if compiler_type == "msvc":
        return ["/openmp"], []
    if sys.platform == "darwin":  # Apple clang needs libomp and the preprocessor flag
        return ["-Xpreprocessor", "-fopenmp"], ["-lomp"]
    return ["-fopenmp"], ["-fopenmp"]


def _compiles(compiler, source, flags, link_flags=()):
    """Whether ``source`` compiles (and links into a shared object) with ``flags``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "probe.c")
        with open(path, "w") as handle:
            handle.write(source)
        try:
            objects = compiler.compile([path], output_dir=tmp, extra_postargs=list(flags))
            if link_flags:
                compiler.link_shared_object(objects, os.path.join(tmp, "probe.so"),
                                            extra_postargs=list(link_flags))
        except Exception:  # CompileError, LinkError, a missing compiler executable
            return False
    return True


class OptionalBuildExt(build_ext):
    """Choose flags the compiler accepts; never fail the installation for the extension."""

    def build_extensions(self):
        compiler = self.compiler
        ctype = compiler.compiler_type
        if ctype == "msvc":
            compile_args, link_args = ["/O2", "/fp:precise"], []
        else:
            compile_args, link_args = ["-O3"], []
            for flag in ("-fno-math-errno", "-ffp-contract=fast", "-fno-trapping-math",
                         "-fno-tree-sink", "-fno-thread-jumps"):
                if _compiles(compiler, "int f(void) { return 0; }\n", [flag]):
                    compile_args.append(flag)
            # Not -fassociative-math (nor -funsafe-math-optimizations, which implies it): gcc 12
            # then breaks the Cody-Waite reduction of the vectorised float32 exp (relative error
            # 3.6e-6 instead of 6e-8) despite __builtin_assoc_barrier. Without it, float sums
            # do not vectorise (see the report in tests/test_cython.py's history).
            if os.environ.get("FASTXENT_ASSOCIATIVE_MATH") and _compiles(
                    compiler, _FENCE_PROBE, ["-funsafe-math-optimizations",
                                             "-Werror=implicit-function-declaration"]):
                compile_args.append("-funsafe-math-optimizations")
        omp_compile, omp_link = _openmp_flags(ctype)
        self.fastxent_openmp = _compiles(compiler, _OPENMP_PROBE, omp_compile, omp_link)
        if self.fastxent_openmp:
            compile_args += omp_compile
            link_args += omp_link
        else:
            warnings.warn("fastxent: the C compiler has no OpenMP; the Cython backend is built "
                          "serial (one thread)")
        module_flags = {} if ctype == "msvc" else {
            module: [flag for flag in flags
                     if _compiles(compiler, "int f(void) { return 0; }\n", [flag, "-Werror"])]
            for module, flags in _MODULE_FLAGS.items()}
        kept = []
        for ext in self.extensions:
            variant_flags = getattr(ext, "fastxent_variant_flags", None)
            if variant_flags is not None:
                if ctype == "msvc" or not _compiles(compiler, "int f(void) { return 0; }\n",
                                                    variant_flags):
                    continue              # the baseline module serves this CPU family
            leaf = ext.name.rpartition(".")[2]
            ext.extra_compile_args = (compile_args + module_flags.get(leaf, [])
                                      + list(ext.extra_compile_args))
            ext.extra_link_args = link_args + list(ext.extra_link_args)
            kept.append(ext)
        self.extensions[:] = kept
        super().build_extensions()

    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler, compile errors: install without the extension
            warnings.warn(f"fastxent: the Cython backend could not be built ({exc}); "
                          "installing without it (Numba and NumPy backends only)")

    def build_extension(self, ext):
        if getattr(ext, "fastxent_variant_flags", None) is not None:
            # the variant compiles the baseline's generated C: copy it under its own name, so its
            # object file never shares a path with the baseline's (parallel builds, -j)
            variant_dir = os.path.join(self.build_temp, "fastxent_cpu_variants",
                                       *ext.name.split(".")[:-1])
            os.makedirs(variant_dir, exist_ok=True)
            copies = []
            for source in ext.sources:
                target = os.path.join(variant_dir, os.path.basename(source))
                shutil.copyfile(source, target)
                copies.append(target)
            ext.sources = copies
        try:
            super().build_extension(ext)
        except Exception as exc:
            warnings.warn(f"fastxent: extension {ext.name} could not be built ({exc}); "
                          "the Cython backend will report itself unavailable")


def _extensions():
    sources = sorted(Path("fastxent").rglob("*.pyx"))
    if not sources or os.environ.get("FASTXENT_NO_EXTENSIONS"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        warnings.warn("fastxent: Cython is not installed; installing without the Cython backend")
        return []
    extensions = [
        Extension(".".join(source.with_suffix("").parts), [str(source)],
                  include_dirs=[str(source.parent)])
        for source in sources
    ]
    directives = {"language_level": "3", "boundscheck": False, "wraparound": False,
                  "cdivision": True, "initializedcheck": False}
    # Cython's dependency scan misses ``from . cimport _scalar as S`` (_support.pyx): a changed
    # .pxd left that module's C stale. Regenerate everything when any Cython input or header
    # is newer than the oldest generated C file.
    inputs = [f for ext in ("*.pyx", "*.pxd", "*.h") for f in Path("fastxent").rglob(ext)]
    generated = [s.with_suffix(".c") for s in sources]
    stale = any(not c.exists() for c in generated) or (
        max(f.stat().st_mtime for f in inputs) > min(c.stat().st_mtime for c in generated))
    try:
        built = cythonize(extensions, compiler_directives=directives, quiet=True, force=stale)
    except Exception as exc:  # a Cython error must not break the pure-Python installation
        warnings.warn(f"fastxent: cythonize failed ({exc}); installing without the Cython "
                      "backend")
        return []
    return built + _cpu_variants(built)


def _cpu_variants(built):
    """The kernel modules again, from the same generated C, per ``_CPU_VARIANTS`` (x86-64)."""
    if os.environ.get("FASTXENT_NO_CPU_VARIANTS") or platform.machine().lower() not in (
            "x86_64", "amd64"):
        return []
    variants = []
    for ext in built:
        package, _, leaf = ext.name.rpartition(".")
        if not package.endswith("backends.cython") or leaf.startswith("_"):
            continue
        for variant, flags in _CPU_VARIANTS.items():
            clone = Extension(f"{package}.{variant}.{leaf}", list(ext.sources),
                              include_dirs=list(ext.include_dirs), extra_compile_args=list(flags))
            clone.fastxent_variant_flags = flags
            variants.append(clone)
    return variants


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
