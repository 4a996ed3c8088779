"""CUDA backend: Numba ``@cuda.jit`` kernels, the GPU twins of ``backends/numba_cpu``.

Imported only when the "cuda" backend is probed or selected (``import numba.cuda`` costs about
0.3 s, and numba-cuda is an optional dependency: ``pip install "fastxent[cuda]"``).
"""
