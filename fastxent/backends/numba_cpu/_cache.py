"""Keeps Numba's on-disk cache of this backend consistent with all of its sources.

Numba keys a cached function on its own source file (its modification time and size), but a
kernel's machine code also holds what it inlined from other files: the row loops (``_rows.py``),
the primitives (``_primitives.py``) and the formulas (``fastxent/_math.py``). After one of those
changes alone (an edited checkout, ``git pull`` or ``git checkout`` in an editable install), a
kernel in an unchanged file would load its old code: for example a softmax kernel with the
previous row-buffer layout silently fell back to its slower online form.

``refresh`` compares a digest of every source the kernels compile from with a stamp kept next
to the cache files, and on a difference removes this backend's cache files, so that each kernel
compiles once more. It runs when this package is imported (``__init__.py``), before any kernel
is loaded from the cache. Failures to read or write (a read-only installation) leave things as
Numba has them.
"""
import hashlib
import os

from numba import njit

STAMP_NAME = "fastxent-numba-sources.stamp"

_HERE = os.path.dirname(os.path.abspath(__file__))
_MATH = os.path.join(os.path.dirname(os.path.dirname(_HERE)), "_math.py")


def source_files():
    """The files the kernels compile from: this package's modules and ``fastxent/_math.py``."""
    own = sorted(os.path.join(_HERE, name) for name in os.listdir(_HERE) if name.endswith(".py"))
    return own + [_MATH]


def sources_digest():
    """SHA-256 over the names and contents of ``source_files()``."""
    digest = hashlib.sha256()
    for path in source_files():
        digest.update(os.path.basename(path).encode())
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


@njit(cache=True)
def _locator():       # never called: its cache directory is the one of every module here
    return 0


def cache_dir():
    """Where Numba keeps this package's cache files (``__pycache__`` beside the sources, a
    folder under ``NUMBA_CACHE_DIR``, or the user-wide one; None if Numba has none)."""
    return getattr(getattr(_locator, "_cache", None), "_cache_path", None)


def refresh():
    """Remove this backend's cache files if they were written for other sources; returns how
    many were removed (0 when the stamp matches)."""
    path = cache_dir()
    if not path:
        return 0
    digest = sources_digest()
    stamp = os.path.join(path, STAMP_NAME)
    try:
        with open(stamp) as f:
            if f.read().strip() == digest:
                return 0
    except OSError:
        pass
    stems = {os.path.basename(p)[:-3] for p in source_files()[:-1]}
    removed = 0
    try:
        names = os.listdir(path)
    except OSError:
        names = []
    for name in names:
        if name.endswith((".nbi", ".nbc")) and name.split(".")[0] in stems:
            try:
                os.remove(os.path.join(path, name))
                removed += 1
            except OSError:
                pass
    try:
        os.makedirs(path, exist_ok=True)
        tmp = f"{stamp}.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(digest + "\n")
        os.replace(tmp, stamp)
    except OSError:
        pass
    return removed
