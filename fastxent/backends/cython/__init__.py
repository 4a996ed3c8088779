"""Cython backend: ahead-of-time compiled OpenMP kernels (built by ``pip install``).

``kernels.run(job)`` has the semantics of the Numba CPU backend's; the scalar formulas of
``fastxent/_math.py`` are mirrored by name in ``_scalar.pxd``. Importing ``kernels`` fails with an
``ImportError`` when the extension modules were not built (the dispatcher reports why).
"""
