"""The Cython kernel modules compiled with -march=x86-64-v3 (see setup.py); imported by
``..kernels`` only on CPUs that support it."""
