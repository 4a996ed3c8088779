"""Seeded synthetic extreme multi-label batches for demos, benchmarks and tests.

No extreme-classification data set ships inside a package we can install offline, so the demo,
the benchmarks and the tests use :func:`make_batch`: a batch whose label statistics look like an
extreme-classification data set (a few positives per row, label frequencies following a Zipf law
over a very large label space) and whose logits are standard normal with a bump at the positives.

The generator is written for size: the default batch (2048 x 131072 float32, 1 GiB of logits) is
made in about 0.6 s on two cores, with temporaries of about 1.5 MiB per thread besides the
output itself.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["make_batch", "POSITIVE_BUMP"]

#: Added to the logits at every positive, so that the positives are on average more likely.
POSITIVE_BUMP = 2.0

# Logits are filled in blocks of this many elements, each with its own generator spawned from the
# seed: the result depends on the seed and the shape only, never on the number of threads.
_BLOCK_ELEMENTS = 1 << 22
# Work inside a block in pieces that stay in the L2 cache; much smaller pieces make two threads
# slower than one (the GIL is taken around every ufunc call), 2**17 measured best here.
_PIECE_ELEMENTS = 1 << 17
# Rounds of "draw the missing positives again" before the exact but slow per-row fallback.
_MAX_REDRAW_ROUNDS = 64


def make_batch(
    n_rows=2048,
    n_classes=131072,
    avg_positives=5.0,
    zipf_exponent=1.1,
    dtype=np.float32,
    seed=0,
):
    """Make a seeded synthetic extreme multi-label batch.

    Parameters
    ----------
    n_rows, n_classes : int
        Shape of the logits, ``N x C``.
    avg_positives : float
        Mean number of positives per row: each row draws ``k ~ Poisson(avg_positives)``, clipped
        to ``1 <= k <= n_classes``.
    zipf_exponent : float
        Label frequencies follow ``P(class of rank r) ~ r ** -zipf_exponent``; the ranks are
        assigned to the classes by a random permutation, so the frequent classes are spread over
        the whole label space. ``0`` gives uniform labels.
    dtype : numpy floating dtype
        dtype of the logits (float32 and float64 are generated natively; other floating types
        are generated in float32 and cast).
    seed : int or numpy.random.SeedSequence
        Everything is a function of the seed and the arguments (not of the machine's threads).

    Returns
    -------
    logits : ndarray [N, C] of ``dtype``
        ``N(0, 1)`` values plus :data:`POSITIVE_BUMP` at the positives.
    indptr : ndarray [N + 1] of int64
        CSR row pointers of the positives.
    indices : ndarray [nnz] of int64
        Column (class) indices of the positives, unique and sorted within each row.
    labels_int : ndarray [N] of int64
        One positive per row (the first, i.e. the smallest class index of the row), for the
        class-index target form.
    """
    n_rows = _non_negative_int(n_rows, "n_rows")
    n_classes = _non_negative_int(n_classes, "n_classes")
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    avg_positives = float(avg_positives)
    if not avg_positives >= 0.0:
        raise ValueError(f"avg_positives must be >= 0, got {avg_positives}")
    zipf_exponent = float(zipf_exponent)
    if not zipf_exponent >= 0.0:
        raise ValueError(f"zipf_exponent must be >= 0, got {zipf_exponent}")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")

    root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    label_seed, logit_seed = root.spawn(2)

    indptr, indices = _zipf_positives(
        np.random.default_rng(label_seed), n_rows, n_classes, avg_positives, zipf_exponent
    )
    logits = _standard_normal((n_rows, n_classes), dtype, logit_seed)
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(indptr))
    logits[rows, indices] += dtype.type(POSITIVE_BUMP)
    labels_int = indices[indptr[:-1]].copy()
    return logits, indptr, indices, labels_int


def _non_negative_int(value, name):
    if isinstance(value, (bool, np.bool_)) or int(value) != value or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------------
# Positives: Zipf-distributed classes, sampled without replacement within a row.


def _zipf_positives(rng, n_rows, n_classes, avg_positives, zipf_exponent):
    """CSR positives: per row ``k ~ Poisson`` distinct classes drawn with Zipf weights.

    Sampling without replacement is done by successive sampling: draw the missing number of
    classes for every row with replacement, keep the distinct ones, and repeat for the rows that
    still miss some. All rows are handled together with sorted int64 keys ``row * C + class``.
    """
    counts = np.clip(rng.poisson(avg_positives, size=n_rows), 1, n_classes).astype(np.int64)
    cdf = np.cumsum(np.arange(1, n_classes + 1, dtype=np.float64) ** -zipf_exponent)
    cdf /= cdf[-1]
    class_of_rank = rng.permutation(n_classes).astype(np.int64)

    def draw(rows):
        ranks = np.searchsorted(cdf, rng.random(rows.size), side="right")
        np.minimum(ranks, n_classes - 1, out=ranks)  # guards against cdf[-1] rounding below 1
        return rows * n_classes + class_of_rank[ranks]

    keys = np.unique(draw(np.repeat(np.arange(n_rows, dtype=np.int64), counts)))
    for _ in range(_MAX_REDRAW_ROUNDS):
        missing = counts - np.bincount(keys // n_classes, minlength=n_rows)
        if not missing.any():
            break
        rows = np.repeat(np.arange(n_rows, dtype=np.int64), missing)
        keys = np.unique(np.concatenate([keys, draw(rows)]))
    else:
        keys = _fill_missing_exactly(rng, keys, counts, cdf, class_of_rank, n_classes)

    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys // n_classes, minlength=n_rows), out=indptr[1:])
    indices = keys % n_classes
    return indptr, indices


def _fill_missing_exactly(rng, keys, counts, cdf, class_of_rank, n_classes):
    """Rows still short of positives (heavy skew, k close to C): draw from the unused classes."""
    weight_of_class = np.empty(n_classes, dtype=np.float64)
    weight_of_class[class_of_rank] = np.diff(cdf, prepend=0.0)
    have = np.bincount(keys // n_classes, minlength=counts.size)
    extra = []
    for row in np.flatnonzero(have < counts):
        taken = keys[(keys >= row * n_classes) & (keys < (row + 1) * n_classes)] % n_classes
        free = np.setdiff1d(np.arange(n_classes), taken)
        need = counts[row] - have[row]
        p = weight_of_class[free]
        # weights that underflowed to 0 (huge exponents) cannot be drawn: then draw uniformly
        p = p / p.sum() if np.count_nonzero(p) >= need else None
        chosen = rng.choice(free, size=need, replace=False, p=p)
        extra.append(row * n_classes + chosen.astype(np.int64))
    return np.unique(np.concatenate([keys, *extra]))


# --------------------------------------------------------------------------------------------
# Logits: standard normal by the Box-Muller transform on NumPy's SIMD log/sqrt/sin/cos.
#
# NumPy's ziggurat (Generator.standard_normal) costs about 9 ns per value on this kind of
# machine, i.e. 2.4 s for 2**28 values; raw 64-bit draws turned into uniforms and transformed
# with vectorised ufuncs cost about 3.5 ns per value on one thread and split across threads
# (ufuncs and the bit generators release the GIL): 0.5 s for 2**28 values on two cores.


def _standard_normal(shape, dtype, seed_sequence):
    work_dtype = np.float64 if dtype == np.float64 else np.float32
    out = np.empty(shape, dtype=work_dtype)
    flat = out.reshape(-1)
    n_blocks = -(-flat.size // _BLOCK_ELEMENTS)
    block_seeds = seed_sequence.spawn(n_blocks)

    def fill_block(b):
        block = flat[b * _BLOCK_ELEMENTS : (b + 1) * _BLOCK_ELEMENTS]
        bit_generator = np.random.PCG64(block_seeds[b])
        if work_dtype == np.float64:
            _box_muller_float64(bit_generator, block)
        else:
            _box_muller_float32(bit_generator, block)

    n_workers = min(os.cpu_count() or 1, n_blocks)
    if n_workers <= 1:
        for b in range(n_blocks):
            fill_block(b)
    else:
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            list(pool.map(fill_block, range(n_blocks)))
    return out if out.dtype == dtype else out.astype(dtype)


def _box_muller_float32(bit_generator, block):
    """Fill ``block`` (float32) with N(0, 1) values; each 64-bit draw gives two 24-bit uniforms."""
    half = _PIECE_ELEMENTS // 2
    raw = np.empty(half, dtype=np.uint64)
    words = raw.view(np.uint32).reshape(half, 2)  # two 32-bit words per draw
    radius = np.empty(half, dtype=np.float32)
    angle = np.empty(half, dtype=np.float32)
    tail = np.empty(_PIECE_ELEMENTS, dtype=np.float32) if block.size % _PIECE_ELEMENTS else None
    scale = np.float32(2.0**-24)
    for start in range(0, block.size, _PIECE_ELEMENTS):
        piece = block[start : start + _PIECE_ELEMENTS]
        target = piece if piece.size == _PIECE_ELEMENTS else tail
        raw[:] = bit_generator.random_raw(half)
        np.right_shift(words, 8, out=words)  # 24-bit integers, exact in float32
        # u1 = (k + 1) / 2**24 in (0, 1]; radius = sqrt(-2 log u1)
        np.add(words[:, 0], 1, out=words[:, 0])
        np.multiply(words[:, 0], scale, out=radius, dtype=np.float32, casting="unsafe")
        np.log(radius, out=radius)
        np.multiply(radius, np.float32(-2.0), out=radius)
        np.sqrt(radius, out=radius)
        # angle = 2 pi u2, u2 in [0, 1)
        np.multiply(words[:, 1], scale * np.float32(2.0 * np.pi), out=angle, dtype=np.float32,
                    casting="unsafe")
        np.cos(angle, out=target[:half])
        np.sin(angle, out=target[half:])
        np.multiply(target[:half], radius, out=target[:half])
        np.multiply(target[half:], radius, out=target[half:])
        if target is tail:
            piece[:] = tail[: piece.size]


def _box_muller_float64(bit_generator, block):
    """Fill ``block`` (float64) with N(0, 1) values; one 64-bit draw per 53-bit uniform."""
    half = _PIECE_ELEMENTS // 2
    raw = np.empty((2, half), dtype=np.uint64)
    radius = np.empty(half, dtype=np.float64)
    angle = np.empty(half, dtype=np.float64)
    tail = np.empty(_PIECE_ELEMENTS, dtype=np.float64) if block.size % _PIECE_ELEMENTS else None
    scale = 2.0**-53
    for start in range(0, block.size, _PIECE_ELEMENTS):
        piece = block[start : start + _PIECE_ELEMENTS]
        target = piece if piece.size == _PIECE_ELEMENTS else tail
        raw.reshape(-1)[:] = bit_generator.random_raw(2 * half)
        np.right_shift(raw, 11, out=raw)  # 53-bit integers, exact in float64
        np.add(raw[0], 1, out=raw[0])
        signed = raw.view(np.int64)
        np.multiply(signed[0], scale, out=radius)
        np.log(radius, out=radius)
        np.multiply(radius, -2.0, out=radius)
        np.sqrt(radius, out=radius)
        np.multiply(signed[1], scale * 2.0 * np.pi, out=angle)
        np.cos(angle, out=target[:half])
        np.sin(angle, out=target[half:])
        np.multiply(target[:half], radius, out=target[:half])
        np.multiply(target[half:], radius, out=target[half:])
        if target is tail:
            piece[:] = tail[: piece.size]
