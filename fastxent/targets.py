"""Sparse multi-label targets: :class:`MultiLabel`, a validated CSR container.

Extreme multi-label batches have hundreds of thousands of classes but only a
handful of positives per row, so targets are stored in compressed sparse row
(CSR) form: row ``n`` owns the positives ``indices[indptr[n]:indptr[n + 1]]``
and, optionally, their target values ``values[indptr[n]:indptr[n + 1]]``
(default 1). See ``docs/losses.md`` ("Target forms") for how the losses use
them.

Canonical form (what every :class:`MultiLabel` holds, and what the Numba
kernels read directly):

* ``indptr``: int64, C-contiguous, shape ``[n_rows + 1]``, ``indptr[0] == 0``,
  non-decreasing, ``indptr[-1] == nnz``;
* ``indices``: int64, C-contiguous, shape ``[nnz]``, each in
  ``[0, n_classes)``, strictly increasing within each row (sorted, no
  duplicates);
* ``values``: ``None`` (every positive has value 1) or float64, C-contiguous,
  shape ``[nnz]``, finite and ``>= 0``;
* ``n_classes``: a Python int ``>= 1``.

The stored arrays are read-only views. When the input arrays are already
canonical they are used without a copy (so do not modify them afterwards, or
pass ``copy=True``); otherwise the container owns fresh copies. The caller's
arrays are never modified.

Example:

>>> import numpy as np
>>> y = MultiLabel.from_lists([[3, 1], [], [0]], n_classes=4)
>>> y
MultiLabel(n_rows=3, n_classes=4, nnz=3, values=None)
>>> y.indptr, y.indices
(array([0, 2, 2, 3]), array([1, 3, 0]))
>>> y.to_dense(dtype=np.int8)
array([[0, 1, 0, 1],
       [0, 0, 0, 0],
       [1, 0, 0, 0]], dtype=int8)
"""

from __future__ import annotations

import gzip
import io
import operator
import os
import sys
from typing import IO, Any, Iterable, Optional, Union

import numpy as np

__all__ = ["MultiLabel", "as_multilabel"]

_INT64_MAX = np.iinfo(np.int64).max


# ----------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------


def _check_n_classes(n_classes: Any, name: str = "n_classes") -> int:
    """Return ``n_classes`` as a Python int >= 1, or raise."""
    if isinstance(n_classes, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int >= 1, got the bool {n_classes!r}")
    try:
        n = operator.index(n_classes)
    except TypeError:
        raise TypeError(
            f"{name} must be an int >= 1 (the number of classes), got "
            f"{type(n_classes).__name__} {n_classes!r}; pass e.g. int({name})"
        ) from None
    if n < 1:
        raise ValueError(
            f"{name} must be an int >= 1 (the number of classes), got {n}"
        )
    return int(n)


def _as_int64_1d(x: Any, name: str) -> np.ndarray:
    """Convert an integer array-like to a C-contiguous int64 1-D array.

    No copy when ``x`` already is one. Raises TypeError for non-integer dtypes
    (floats, bools, ...) and ValueError for the wrong number of dimensions.
    """
    arr = np.asarray(x)
    if arr.size == 0 and not isinstance(x, np.ndarray) and arr.dtype.kind == "f":
        arr = arr.astype(np.int64)  # an empty list/tuple
    if arr.dtype.kind not in "iu":
        raise TypeError(
            f"{name} must be an array of integers, got dtype {arr.dtype}; "
            f"convert it, e.g. np.asarray({name}, dtype=np.int64)"
        )
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got an array of shape {arr.shape}")
    if arr.dtype == np.uint64 and arr.size and arr.max() > _INT64_MAX:
        raise ValueError(f"{name} holds a value above the int64 range: {arr.max()}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _as_values(x: Any, name: str, nnz: int) -> np.ndarray:
    """Convert target values to a C-contiguous float64 1-D array, or raise."""
    arr = np.asarray(x)
    if arr.size == 0 and not isinstance(x, np.ndarray):
        arr = arr.astype(np.float64)
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must be an array of real numbers, got dtype {arr.dtype}"
        )
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got an array of shape {arr.shape}")
    if arr.shape[0] != nnz:
        raise ValueError(
            f"{name} must have one entry per index: got {arr.shape[0]} values "
            f"for {nnz} indices; pass values=None for all-ones targets"
        )
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    _check_values_range(arr, name)
    return arr


def _check_values_range(arr: np.ndarray, name: str) -> None:
    if arr.size == 0:
        return
    finite = np.isfinite(arr)
    if not finite.all():
        pos = int(np.flatnonzero(~finite)[0])
        raise ValueError(
            f"{name} must be finite: entry {pos} is {arr[pos]}; remove or "
            f"replace NaN/inf target values"
        )
    if arr.min() < 0:
        pos = int(np.flatnonzero(arr < 0)[0])
        raise ValueError(
            f"{name} must be >= 0: entry {pos} is {arr[pos]}; target values "
            f"are non-negative weights of the positives"
        )


def _readonly(arr: np.ndarray) -> np.ndarray:
    view = arr.view()
    view.flags.writeable = False
    return view


def _row_of(indptr: np.ndarray, pos: int) -> int:
    """Row owning flat position ``pos`` (skipping empty rows)."""
    return int(np.searchsorted(indptr, pos, side="right") - 1)


# ----------------------------------------------------------------------------
# the container
# ----------------------------------------------------------------------------


def _check_compressed(matrix) -> None:
    """Validate a CSR/CSC matrix's index arrays before scipy itself walks them."""
    major = matrix.shape[0] if matrix.format == "csr" else matrix.shape[1]
    minor = matrix.shape[1] if matrix.format == "csr" else matrix.shape[0]
    indptr = np.asarray(matrix.indptr)
    indices = np.asarray(matrix.indices)
    if indptr.ndim != 1 or indptr.size != major + 1:
        raise ValueError(f"targets: the sparse matrix's indptr must have {major + 1} entries, "
                         f"got {indptr.size}")
    if indptr[0] != 0 or np.any(np.diff(indptr) < 0) or indptr[-1] > indices.size:
        raise ValueError("targets: the sparse matrix's indptr must start at 0, never decrease "
                         "and end at most at len(indices); rebuild the matrix from valid "
                         "(data, indices, indptr)")
    used = indices[:indptr[-1]]
    if used.size and (used.min() < 0 or used.max() >= minor):
        raise ValueError(f"targets: the sparse matrix's indices must be in [0, {minor})")


def rows_strictly_increasing(indptr: np.ndarray, indices: np.ndarray) -> bool:
    """Whether the class ids rise strictly within every row of a CSR (sorted, no duplicate);
    they may fall at row boundaries. O(nnz)."""
    nnz = indices.shape[0]
    if nnz < 2:
        return True
    rising = np.diff(indices) > 0
    starts = indptr[1:-1]
    rising[starts[(starts > 0) & (starts < nnz)] - 1] = True      # row boundaries
    return bool(rising.all())


class MultiLabel:
    """Positive labels per row, in validated canonical CSR form.

    Parameters
    ----------
    indptr : array of int, shape [n_rows + 1]
        Row pointers: ``indptr[0] == 0``, non-decreasing,
        ``indptr[-1] == len(indices)``. Any integer dtype.
    indices : array of int, shape [nnz]
        Class ids of the positives, each in ``[0, n_classes)``, no duplicate
        within a row. Rows given unsorted are sorted (``values`` follow).
    n_classes : int
        Number of classes C (``>= 1``).
    values : array of float, shape [nnz], optional
        Target value of each positive (finite, ``>= 0``). ``None`` means 1 for
        every positive. Kept as given even when all ones.
    copy : bool, default False
        Always copy the input arrays (by default they are used directly when
        already canonical).

    Raises
    ------
    TypeError
        Non-integer ``indptr``/``indices``/``n_classes``, non-real ``values``.
    ValueError
        Any broken CSR invariant; the message names the argument (and the row
        and class id when an index is bad).

    Examples
    --------
    >>> import numpy as np
    >>> y = MultiLabel([0, 2, 3], np.array([4, 1, 0], dtype=np.int32), 5,
    ...                values=[0.25, 0.75, 1.0])
    >>> y.shape, y.nnz, len(y)
    ((2, 5), 3, 2)
    >>> y.indices, y.values   # row 0 was sorted, its values followed
    (array([1, 4, 0]), array([0.75, 0.25, 1.  ]))
    >>> y.indices.dtype, y.indptr.dtype
    (dtype('int64'), dtype('int64'))
    >>> MultiLabel([0, 1], [5], 5)
    Traceback (most recent call last):
    ...
    ValueError: indices: row 0 has class id 5, outside [0, n_classes=5); class ids are 0-based and must be < n_classes
    """

    __slots__ = ("_indptr", "_indices", "_values", "_n_classes")

    def __init__(
        self,
        indptr: Any,
        indices: Any,
        n_classes: int,
        values: Optional[Any] = None,
        *,
        copy: bool = False,
    ) -> None:
        n_classes = _check_n_classes(n_classes)

        indptr_a = _as_int64_1d(indptr, "indptr")
        indices_a = _as_int64_1d(indices, "indices")
        nnz = indices_a.shape[0]
        if indptr_a.shape[0] == 0:
            raise ValueError(
                "indptr must be non-empty: it has n_rows + 1 entries "
                "(use indptr=[0] for zero rows)"
            )
        if indptr_a[0] != 0:
            raise ValueError(f"indptr must start at 0, got indptr[0] = {indptr_a[0]}")
        if indptr_a.shape[0] > 1:
            d = np.diff(indptr_a)
            if d.min() < 0:
                k = int(np.flatnonzero(d < 0)[0])
                raise ValueError(
                    f"indptr must be non-decreasing: indptr[{k}] = {indptr_a[k]} "
                    f"> indptr[{k + 1}] = {indptr_a[k + 1]}"
                )
        if indptr_a[-1] != nnz:
            raise ValueError(
                f"indptr must end at nnz = len(indices) = {nnz}, got "
                f"indptr[-1] = {indptr_a[-1]}; indptr and indices do not match"
            )

        values_a = None if values is None else _as_values(values, "values", nnz)

        if nnz:
            lo, hi = indices_a.min(), indices_a.max()
            if lo < 0 or hi >= n_classes:
                pos = int(np.flatnonzero((indices_a < 0) | (indices_a >= n_classes))[0])
                raise ValueError(
                    f"indices: row {_row_of(indptr_a, pos)} has class id "
                    f"{indices_a[pos]}, outside [0, n_classes={n_classes}); "
                    f"class ids are 0-based and must be < n_classes"
                )

        if not rows_strictly_increasing(indptr_a, indices_a):
            indices_a, values_a = self._sort_rows(indptr_a, indices_a, values_a, n_classes)

        if copy:
            indptr_a, indices_a = indptr_a.copy(), indices_a.copy()
            values_a = None if values_a is None else values_a.copy()

        self._indptr = _readonly(indptr_a)
        self._indices = _readonly(indices_a)
        self._values = None if values_a is None else _readonly(values_a)
        self._n_classes = n_classes

    @staticmethod
    def _sort_rows(indptr, indices, values, n_classes):
        """Sort every row's indices (values follow); reject duplicates."""
        n_rows = indptr.shape[0] - 1
        row_id = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(indptr))
        if n_rows * n_classes <= _INT64_MAX:
            # one int64 key per entry: much faster than np.lexsort
            key = row_id * n_classes + indices
            if values is None:
                key.sort()
                order = None
            else:
                order = np.argsort(key, kind="stable")
                key = key[order]
            dup = np.flatnonzero(key[1:] == key[:-1])
            indices = key - row_id * n_classes  # row_id is unchanged by the sort
        else:  # n_rows * n_classes > 2**63: lexsort
            order = np.lexsort((indices, row_id))
            indices = indices[order]
            dup = np.flatnonzero(indices[1:] == indices[:-1])
            dup = dup[row_id[dup] == row_id[dup + 1]]
        if dup.size:
            p = int(dup[0])
            raise ValueError(
                f"indices: row {row_id[p]} contains class id {indices[p]} more "
                f"than once; remove duplicate indices (MultiLabel.from_scipy "
                f"sums duplicates, if that is what you want)"
            )
        if values is not None:
            values = values[order]
        return indices, values

    # ---------------------------------------------------------------- basics

    @property
    def indptr(self) -> np.ndarray:
        """Row pointers, read-only int64 ``[n_rows + 1]``."""
        return self._indptr

    @property
    def indices(self) -> np.ndarray:
        """Class ids of the positives, read-only int64 ``[nnz]``, sorted per row."""
        return self._indices

    @property
    def values(self) -> Optional[np.ndarray]:
        """Target values, read-only float64 ``[nnz]``, or ``None`` (all 1)."""
        return self._values

    @property
    def n_classes(self) -> int:
        """Number of classes C."""
        return self._n_classes

    @property
    def n_rows(self) -> int:
        """Number of rows N."""
        return int(self._indptr.shape[0] - 1)

    @property
    def nnz(self) -> int:
        """Number of stored positives."""
        return int(self._indices.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_rows, n_classes)``."""
        return (self.n_rows, self._n_classes)

    def __len__(self) -> int:
        return self.n_rows

    def __repr__(self) -> str:
        vals = "None" if self._values is None else "float64"
        return (
            f"MultiLabel(n_rows={self.n_rows}, n_classes={self._n_classes}, "
            f"nnz={self.nnz}, values={vals})"
        )

    # ---------------------------------------------------------- row summaries

    def row_counts(self) -> np.ndarray:
        """Number of positives per row, int64 ``[n_rows]``.

        >>> MultiLabel.from_lists([[0, 2], [], [1]], 3).row_counts()
        array([2, 0, 1])
        """
        return np.diff(self._indptr)

    def row_ids(self) -> np.ndarray:
        """Row of every stored positive, int64 ``[nnz]`` (COO row indices).

        >>> MultiLabel.from_lists([[0, 2], [], [1]], 3).row_ids()
        array([0, 0, 2])
        """
        return np.repeat(np.arange(self.n_rows, dtype=np.int64), self.row_counts())

    def row_sums(self) -> np.ndarray:
        """Sum of the values per row, float64 ``[n_rows]`` (counts if ``values`` is None).

        >>> y = MultiLabel([0, 2, 2, 3], [0, 2, 1], 3, values=[0.5, 2.0, 0.0])
        >>> y.row_sums()
        array([2.5, 0. , 0. ])
        """
        if self._values is None:
            return self.row_counts().astype(np.float64)
        return np.bincount(self.row_ids(), weights=self._values, minlength=self.n_rows)

    # ----------------------------------------------------------- conversions

    def to_dense(self, dtype: Any = np.float32) -> np.ndarray:
        """Dense ``[n_rows, n_classes]`` array: the value (or 1) at positives, 0 elsewhere.

        Mind the size: N x C elements.

        >>> MultiLabel([0, 1, 2], [2, 0], 3, values=[0.5, 2.0]).to_dense()
        array([[0. , 0. , 0.5],
               [2. , 0. , 0. ]], dtype=float32)
        """
        out = np.zeros(self.shape, dtype=dtype)
        out[self.row_ids(), self._indices] = 1 if self._values is None else self._values
        return out

    def to_scipy(self, dtype: Any = np.float64, *, as_matrix: bool = False):
        """A new ``scipy.sparse.csr_array`` (``csr_matrix`` if ``as_matrix``).

        The arrays are copied, so the result may be modified freely. The data
        are the values (1 when ``values`` is None) cast to ``dtype``.

        >>> MultiLabel.from_lists([[1], [0, 2]], 3).to_scipy().toarray()
        array([[0., 1., 0.],
               [1., 0., 1.]])
        """
        import scipy.sparse as sp

        if self._values is None:
            data = np.ones(self.nnz, dtype=dtype)
        else:
            data = self._values.astype(dtype, copy=True)
        cls = sp.csr_matrix if as_matrix else sp.csr_array
        return cls(
            (data, self._indices.copy(), self._indptr.copy()),
            shape=self.shape,
            copy=False,
        )

    # ---------------------------------------------------------- constructors

    @classmethod
    def from_scipy(cls, matrix: Any, n_classes: Optional[int] = None) -> "MultiLabel":
        """Build from any 2-D ``scipy.sparse`` matrix or array (CSR, CSC, COO, ...).

        Every **explicitly stored** entry is a positive whose value is the
        stored data, so an explicitly stored 0 is a positive with value 0 (for
        softmax losses a row whose values sum to 0 has no target distribution);
        call ``matrix.eliminate_zeros()`` first if that is not wanted. Duplicate
        entries (COO, or non-canonical CSR/CSC) are **summed**, as scipy does
        when converting to CSR. If all values equal 1, ``values`` is None.

        Parameters
        ----------
        matrix : scipy.sparse sparray or spmatrix, shape [N, C]
            Stored data must be real, finite and ``>= 0``. Not modified.
        n_classes : int, optional
            Defaults to ``matrix.shape[1]``; may be larger (widens the label
            space), never smaller.

        >>> import scipy.sparse as sp
        >>> m = sp.coo_array(([1.0, 1.0, 1.0], ([0, 1, 1], [2, 0, 0])), shape=(2, 3))
        >>> y = MultiLabel.from_scipy(m)   # the two (1, 0) entries are summed
        >>> y.indptr, y.indices, y.values
        (array([0, 1, 2]), array([2, 0]), array([1., 2.]))
        >>> MultiLabel.from_scipy(sp.csr_matrix(np.eye(2)), n_classes=4)
        MultiLabel(n_rows=2, n_classes=4, nnz=2, values=None)
        """
        import scipy.sparse as sp

        if not sp.issparse(matrix):
            raise TypeError(
                f"matrix must be a scipy.sparse matrix or array, got "
                f"{type(matrix).__name__}; use MultiLabel.from_dense for dense arrays"
            )
        if matrix.ndim != 2:
            raise ValueError(f"matrix must be 2-D [N, C], got shape {matrix.shape}")
        if matrix.dtype.kind not in "biuf":
            raise TypeError(f"matrix must hold real numbers, got dtype {matrix.dtype}")
        n_rows, n_cols = matrix.shape
        if n_classes is None:
            if n_cols < 1:
                raise ValueError("matrix must have at least one column (class)")
            n_classes = n_cols
        else:
            n_classes = _check_n_classes(n_classes)
            if n_classes < n_cols:
                raise ValueError(
                    f"n_classes ({n_classes}) must be >= matrix.shape[1] ({n_cols}); "
                    f"omit n_classes to use matrix.shape[1]"
                )
        if matrix.format in ("csr", "csc"):
            _check_compressed(matrix)   # scipy trusts these; a bad indptr can crash it below
        m = matrix.tocsr()
        if not m.has_canonical_format:
            if m is matrix:
                m = m.copy()  # never touch the caller's matrix
            m.sum_duplicates()
        data = np.asarray(m.data)
        data = np.ascontiguousarray(data, dtype=np.float64)
        _check_values_range(data, "matrix data (the target values)")
        values = None if bool(np.all(data == 1)) else data
        return cls(m.indptr, m.indices, n_classes, values)

    @classmethod
    def from_lists(cls, rows: Iterable[Iterable[int]], n_classes: int) -> "MultiLabel":
        """Build from one iterable of class ids per row (empty rows allowed).

        Rows may be unsorted; duplicates within a row raise ValueError.

        >>> y = MultiLabel.from_lists([[2, 0], [], (1,)], n_classes=3)
        >>> y.indptr, y.indices
        (array([0, 2, 2, 3]), array([0, 2, 1]))
        """
        n_classes = _check_n_classes(n_classes)
        lengths = []
        flat: list = []
        for i, row in enumerate(rows):
            try:
                items = list(row)
            except TypeError:
                raise TypeError(
                    f"rows[{i}] must be an iterable of ints, got "
                    f"{type(row).__name__}; wrap single labels, e.g. [{row!r}]"
                ) from None
            lengths.append(len(items))
            flat.extend(items)
        indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        arr = np.array(flat) if flat else np.zeros(0, dtype=np.int64)
        if arr.dtype.kind not in "iu" or arr.ndim != 1:
            raise TypeError(
                f"rows must contain only ints (class ids), got entries of dtype "
                f"{arr.dtype}" + ("" if arr.ndim == 1 else " (nested)")
            )
        return cls(indptr, arr, n_classes)

    @classmethod
    def from_dense(cls, y: Any) -> "MultiLabel":
        """Build from a dense ``[N, C]`` array: positives are its non-zero entries.

        ``values`` is None when every non-zero equals 1 (or ``y`` is boolean),
        else the non-zero entries (must be finite and > 0).

        >>> y = MultiLabel.from_dense([[0, 1, 1], [0, 0, 0], [0.5, 0, 0]])
        >>> y.indices, y.values
        (array([1, 2, 0]), array([1. , 1. , 0.5]))
        >>> MultiLabel.from_dense(np.eye(3, dtype=bool)).values is None
        True
        """
        y = np.asarray(y)
        if y.dtype.kind not in "biuf":
            raise TypeError(f"y must hold real numbers, got dtype {y.dtype}")
        if y.ndim != 2:
            raise ValueError(f"y must be 2-D [N, C], got shape {y.shape}")
        if y.shape[1] < 1:
            raise ValueError(f"y must have at least one column (class), got shape {y.shape}")
        rows, cols = np.nonzero(y)
        data = y[rows, cols].astype(np.float64)
        _check_values_range(data, "y (the dense targets)")
        indptr = np.zeros(y.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=y.shape[0]), out=indptr[1:])
        values = None if bool(np.all(data == 1)) else data
        return cls(indptr, cols.astype(np.int64, copy=False), y.shape[1], values)

    @classmethod
    def from_xc_file(
        cls,
        path_or_file: Union[str, os.PathLike, IO],
        n_classes: Optional[int] = None,
        *,
        duplicates: str = "error",
    ) -> "MultiLabel":
        """Read the labels of an Extreme Classification repository (BoW) text file.

        Format: an optional header line ``num_points num_features num_labels``,
        then one point per line: comma-separated 0-based labels, a space, then
        space-separated ``feature:value`` pairs (ignored here)::

            3 5 4
            0,3 1:0.5 4:1.0
             2:1.0
            1 0:2.0

        A point with no labels starts with whitespace or is an empty line (a
        line whose first token is already a ``feature:value`` pair is also
        read as unlabeled). The header is recognised as a first line of
        exactly three integers; when present, the number of points must match
        (blank lines after the last point are ignored). ``.gz`` paths are
        decompressed. Values are None (labels are binary).

        Parameters
        ----------
        path_or_file : path or open file (text or binary)
        n_classes : int, optional
            Defaults to the header's ``num_labels``, else ``max label + 1``.
            If given it must be >= the header's ``num_labels``.
        duplicates : {"error", "drop"}
            A label repeated within a line raises ValueError naming the line
            (``"error"``) or is kept once (``"drop"``).

        >>> import io
        >>> f = io.StringIO("3 5 4\\n0,3 1:0.5 4:1.0\\n 2:1.0\\n1 0:2.0\\n")
        >>> y = MultiLabel.from_xc_file(f)
        >>> y, y.indptr, y.indices
        (MultiLabel(n_rows=3, n_classes=4, nnz=3, values=None), array([0, 2, 2, 3]), array([0, 3, 1]))
        """
        if duplicates not in ("error", "drop"):
            raise ValueError(f'duplicates must be "error" or "drop", got {duplicates!r}')
        if n_classes is not None:
            n_classes = _check_n_classes(n_classes)

        if isinstance(path_or_file, (str, os.PathLike)):
            path = os.fspath(path_or_file)
            opener = gzip.open if str(path).endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8") as f:
                return cls._read_xc(f, n_classes, duplicates, str(path))
        f = path_or_file
        mode = getattr(f, "mode", "")
        if isinstance(f, (io.RawIOBase, io.BufferedIOBase)) or (
            isinstance(mode, str) and "b" in mode
        ):
            f = io.TextIOWrapper(f, encoding="utf-8")
            try:
                return cls._read_xc(f, n_classes, duplicates, "<file>")
            finally:
                f.detach()  # leave the caller's binary file open
        return cls._read_xc(f, n_classes, duplicates, "<file>")

    @classmethod
    def _read_xc(cls, f, n_classes, duplicates, where) -> "MultiLabel":
        header = None
        first_data_line = 1
        lengths: list[int] = []
        flat: list[int] = []
        blank_tail = 0  # trailing empty lines, dropped when a header is present
        for lineno, raw in enumerate(f, start=1):
            line = raw.rstrip("\r\n")
            if lineno == 1:
                toks = line.split()
                if len(toks) == 3 and all(t.isdigit() for t in toks):
                    header = tuple(int(t) for t in toks)
                    first_data_line = 2
                    continue
            if not line.strip():
                lengths.append(0)
                blank_tail += 1
                continue
            blank_tail = 0
            if line[0].isspace():
                lengths.append(0)
                continue
            end = len(line)
            for sep in (" ", "\t"):
                k = line.find(sep)
                if k != -1 and k < end:
                    end = k
            tok = line[:end]
            if ":" in tok:  # a feature, no labels
                lengths.append(0)
                continue
            try:
                labels = [int(s) for s in tok.split(",")]
            except ValueError:
                raise ValueError(
                    f"{where}, line {lineno}: labels must be comma-separated "
                    f"non-negative integers, got {tok!r}"
                ) from None
            if min(labels) < 0:
                raise ValueError(
                    f"{where}, line {lineno}: label {min(labels)} is negative; "
                    f"labels are 0-based class ids"
                )
            if len(labels) > 1 and len(set(labels)) != len(labels):
                if duplicates == "error":
                    seen: set[int] = set()
                    dup = next(l for l in labels if l in seen or seen.add(l))
                    raise ValueError(
                        f"{where}, line {lineno}: label {dup} appears more than "
                        f"once; fix the file or pass duplicates=\"drop\""
                    )
                labels = list(dict.fromkeys(labels))
            lengths.append(len(labels))
            flat.extend(labels)

        if header is not None:
            n_points, _, n_labels = header
            if len(lengths) > n_points and blank_tail >= len(lengths) - n_points:
                del lengths[n_points:]
            if len(lengths) != n_points:
                raise ValueError(
                    f"{where}: the header announces {n_points} points but the "
                    f"file has {len(lengths)} data lines (truncated file?)"
                )
            if n_classes is None:
                if n_labels < 1:
                    raise ValueError(
                        f"{where}: the header announces {n_labels} labels; pass n_classes"
                    )
                n_classes = n_labels
            elif n_classes < n_labels:
                raise ValueError(
                    f"n_classes ({n_classes}) must be >= the header's num_labels "
                    f"({n_labels}); omit n_classes to use the header's"
                )

        indices = np.array(flat, dtype=np.int64)
        if n_classes is None:
            if not flat:
                raise ValueError(
                    f"{where}: no header and no labels, so n_classes cannot be "
                    f"inferred; pass n_classes"
                )
            n_classes = int(indices.max()) + 1
        elif flat and indices.max() >= n_classes:
            pos = int(np.argmax(indices >= n_classes))
            row = int(np.searchsorted(np.cumsum(lengths), pos, side="right"))
            raise ValueError(
                f"{where}, line {row + first_data_line}: label {indices[pos]} is "
                f"outside [0, n_classes={n_classes}); pass a larger n_classes "
                f"or fix the header"
            )
        indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        return cls(indptr, indices, n_classes)


# ----------------------------------------------------------------------------
# dispatcher helper
# ----------------------------------------------------------------------------


def as_multilabel(
    obj: Any, n_classes: int, *, n_rows: Optional[int] = None
) -> Optional[MultiLabel]:
    """Return ``obj`` as a :class:`MultiLabel` if it is sparse, else ``None``.

    * a :class:`MultiLabel`: returned as is, after checking ``obj.n_classes``;
    * any ``scipy.sparse`` matrix/array: converted with
      :meth:`MultiLabel.from_scipy` after checking ``shape[1] == n_classes``;
    * anything else: ``None`` (the caller tries dense / class-index forms).

    ``n_rows``, if given, is checked too. Mismatches raise ValueError naming
    ``targets``.

    >>> import scipy.sparse as sp
    >>> as_multilabel(sp.eye(2, 3, format="csr"), 3)
    MultiLabel(n_rows=2, n_classes=3, nnz=2, values=None)
    >>> as_multilabel(np.zeros((2, 3)), 3) is None
    True
    """
    if isinstance(obj, MultiLabel):
        if obj.n_classes != n_classes:
            raise ValueError(
                f"targets has n_classes={obj.n_classes} but the logits have "
                f"{n_classes} classes; they must match"
            )
        ml = obj
    else:
        # an object can only be a scipy.sparse matrix if scipy.sparse is already imported: do not
        # pay its import (about 0.1 s) on the first call with plain arrays
        sp = sys.modules.get("scipy.sparse")
        if sp is None or not sp.issparse(obj):
            return None
        if obj.ndim != 2 or obj.shape[1] != n_classes:
            raise ValueError(
                f"targets has shape {obj.shape} but the logits have {n_classes} "
                f"classes; sparse targets must be [N, {n_classes}]"
            )
        ml = MultiLabel.from_scipy(obj)
    if n_rows is not None and ml.n_rows != n_rows:
        raise ValueError(
            f"targets has {ml.n_rows} rows but the logits have {n_rows}; they must match"
        )
    return ml
