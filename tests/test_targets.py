"""Tests for fastxent.targets (MultiLabel, as_multilabel)."""

from __future__ import annotations

import doctest
import gzip
import io
import pathlib
import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import fastxent.targets as targets_mod
from fastxent.targets import MultiLabel, as_multilabel

DATA = pathlib.Path(__file__).parent / "data"


def assert_canonical(y: MultiLabel) -> None:
    assert y.indptr.dtype == np.int64 and y.indptr.flags.c_contiguous
    assert y.indices.dtype == np.int64 and y.indices.flags.c_contiguous
    if y.values is not None:
        assert y.values.dtype == np.float64 and y.values.flags.c_contiguous
        assert y.values.shape == (y.nnz,)
    assert y.indptr.shape == (y.n_rows + 1,)
    assert y.indptr[0] == 0 and y.indptr[-1] == y.nnz
    for n in range(y.n_rows):
        row = y.indices[y.indptr[n] : y.indptr[n + 1]]
        assert np.all(np.diff(row) > 0)
    assert isinstance(y.n_classes, int)


def test_doctests():
    res = doctest.testmod(targets_mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.failed == 0 and res.attempted > 0


# --------------------------------------------------------------- constructor


def test_basic_attributes():
    y = MultiLabel([0, 2, 2, 3], [1, 3, 0], 4, values=[0.5, 1.0, 2.0])
    assert_canonical(y)
    assert y.n_rows == 3 and len(y) == 3
    assert y.n_classes == 4
    assert y.nnz == 3
    assert y.shape == (3, 4)
    np.testing.assert_array_equal(y.values, [0.5, 1.0, 2.0])
    assert repr(y) == "MultiLabel(n_rows=3, n_classes=4, nnz=3, values=float64)"
    assert "values=None" in repr(MultiLabel([0, 1], [0], 1))


@pytest.mark.parametrize(
    "dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
)
def test_any_integer_dtype(dtype):
    y = MultiLabel(np.array([0, 1, 3], dtype=dtype), np.array([2, 0, 1], dtype=dtype), 3)
    assert_canonical(y)
    np.testing.assert_array_equal(y.indices, [2, 0, 1])


def test_numpy_integer_n_classes():
    y = MultiLabel([0, 1], [0], np.int32(7))
    assert y.n_classes == 7 and type(y.n_classes) is int


def test_value_dtypes_converted():
    y = MultiLabel([0, 2], [0, 1], 2, values=np.array([1, 3], dtype=np.int32))
    assert y.values.dtype == np.float64
    y = MultiLabel([0, 2], [0, 1], 2, values=np.array([0.5, 1], dtype=np.float32))
    np.testing.assert_array_equal(y.values, [0.5, 1.0])
    y = MultiLabel([0, 2], [0, 1], 2, values=np.array([True, False]))
    np.testing.assert_array_equal(y.values, [1.0, 0.0])


def test_all_ones_values_kept_in_constructor():
    y = MultiLabel([0, 2], [0, 1], 2, values=[1.0, 1.0])
    assert y.values is not None


def test_sorting_unsorted_rows_values_follow():
    indptr = np.array([0, 3, 3, 5, 6], dtype=np.int32)
    indices = np.array([5, 1, 3, 2, 0, 4], dtype=np.int32)
    values = np.array([0.5, 0.1, 0.3, 0.2, 0.0, 0.4])
    ip0, ix0, v0 = indptr.copy(), indices.copy(), values.copy()
    y = MultiLabel(indptr, indices, 6, values)
    assert_canonical(y)
    np.testing.assert_array_equal(y.indptr, [0, 3, 3, 5, 6])
    np.testing.assert_array_equal(y.indices, [1, 3, 5, 0, 2, 4])
    np.testing.assert_array_equal(y.values, [0.1, 0.3, 0.5, 0.0, 0.2, 0.4])
    # caller's arrays untouched
    np.testing.assert_array_equal(indptr, ip0)
    np.testing.assert_array_equal(indices, ix0)
    np.testing.assert_array_equal(values, v0)


def test_sorting_int64_input_not_modified():
    indptr = np.array([0, 2, 4], dtype=np.int64)
    indices = np.array([1, 0, 3, 2], dtype=np.int64)
    values = np.array([1.0, 2.0, 3.0, 4.0])
    copies = [a.copy() for a in (indptr, indices, values)]
    y = MultiLabel(indptr, indices, 4, values)
    for a, c in zip((indptr, indices, values), copies):
        np.testing.assert_array_equal(a, c)
    assert not np.shares_memory(y.indices, indices)
    assert not np.shares_memory(y.values, values)
    np.testing.assert_array_equal(y.indices, [0, 1, 2, 3])
    np.testing.assert_array_equal(y.values, [2.0, 1.0, 4.0, 3.0])


def test_rows_decreasing_across_boundary_is_sorted():
    # [3] | [0, 1]: decreasing at the row boundary only, already canonical
    indptr = np.array([0, 1, 3], dtype=np.int64)
    indices = np.array([3, 0, 1], dtype=np.int64)
    y = MultiLabel(indptr, indices, 4)
    assert np.shares_memory(y.indices, indices)


def test_boundary_with_empty_rows_between():
    y = MultiLabel([0, 1, 1, 1, 3], [2, 0, 1], 3)
    np.testing.assert_array_equal(y.indices, [2, 0, 1])
    y = MultiLabel([0, 0, 2, 2], [1, 0], 3)
    np.testing.assert_array_equal(y.indices, [0, 1])


def test_no_copy_when_canonical():
    indptr = np.array([0, 2, 3], dtype=np.int64)
    indices = np.array([0, 4, 1], dtype=np.int64)
    values = np.array([0.5, 1.0, 2.0])
    y = MultiLabel(indptr, indices, 5, values)
    assert np.shares_memory(y.indptr, indptr)
    assert np.shares_memory(y.indices, indices)
    assert np.shares_memory(y.values, values)
    # the stored views are read-only; the caller's arrays stay writeable
    assert not y.indices.flags.writeable
    assert not y.indptr.flags.writeable
    assert not y.values.flags.writeable
    assert indices.flags.writeable and indptr.flags.writeable and values.flags.writeable
    with pytest.raises(ValueError):
        y.indices[0] = 1


def test_copy_true():
    indptr = np.array([0, 2, 3], dtype=np.int64)
    indices = np.array([0, 4, 1], dtype=np.int64)
    values = np.array([0.5, 1.0, 2.0])
    y = MultiLabel(indptr, indices, 5, values, copy=True)
    assert not np.shares_memory(y.indptr, indptr)
    assert not np.shares_memory(y.indices, indices)
    assert not np.shares_memory(y.values, values)


def test_non_contiguous_input():
    big = np.array([0, 9, 2, 9, 1, 9], dtype=np.int64)
    y = MultiLabel([0, 3], big[::2], 3)
    assert y.indices.flags.c_contiguous
    np.testing.assert_array_equal(y.indices, [0, 1, 2])
    np.testing.assert_array_equal(big, [0, 9, 2, 9, 1, 9])


def test_read_only_inputs_accepted():
    indptr = np.array([0, 2, 3], dtype=np.int32)
    indices = np.array([3, 1, 0], dtype=np.int64)
    values = np.array([0.2, 0.3, 0.5])
    for a in (indptr, indices, values):
        a.flags.writeable = False
    y = MultiLabel(indptr, indices, 4, values)
    assert_canonical(y)
    np.testing.assert_array_equal(y.indices, [1, 3, 0])
    np.testing.assert_array_equal(y.values, [0.3, 0.2, 0.5])
    # canonical read-only input
    ip = np.array([0, 1], dtype=np.int64)
    ix = np.array([0], dtype=np.int64)
    ip.flags.writeable = ix.flags.writeable = False
    assert MultiLabel(ip, ix, 1).nnz == 1
    m = sp.csr_array(
        (values, np.array([1, 3, 0], dtype=np.int32), indptr), shape=(2, 4)
    )
    np.testing.assert_array_equal(MultiLabel.from_scipy(m).indices, [1, 3, 0])


def test_empty_rows_and_no_positives():
    y = MultiLabel([0, 0, 0], [], 5)
    assert y.shape == (2, 5) and y.nnz == 0
    assert_canonical(y)
    np.testing.assert_array_equal(y.to_dense(), np.zeros((2, 5), np.float32))
    np.testing.assert_array_equal(y.row_counts(), [0, 0])
    np.testing.assert_array_equal(y.row_sums(), [0.0, 0.0])


def test_zero_rows():
    y = MultiLabel([0], [], 7)
    assert y.shape == (0, 7) and len(y) == 0 and y.nnz == 0
    assert_canonical(y)
    assert y.to_dense().shape == (0, 7)
    assert y.to_scipy().shape == (0, 7)
    assert y.row_counts().shape == (0,) and y.row_counts().dtype == np.int64
    assert y.row_sums().shape == (0,) and y.row_sums().dtype == np.float64
    y = MultiLabel(np.array([0], np.int32), np.array([], np.int32), 7, values=[])
    assert y.values.shape == (0,) and y.values.dtype == np.float64
    assert MultiLabel.from_lists([], 3).shape == (0, 3)
    assert MultiLabel.from_dense(np.zeros((0, 3))).shape == (0, 3)
    assert MultiLabel.from_scipy(sp.csr_array((0, 3))).shape == (0, 3)


def test_pickle_roundtrip():
    y = MultiLabel([0, 2, 3], [1, 2, 0], 3, values=[1.0, 0.5, 2.0])
    z = pickle.loads(pickle.dumps(y))
    assert z.shape == y.shape
    np.testing.assert_array_equal(z.indices, y.indices)
    np.testing.assert_array_equal(z.values, y.values)


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "indptr, indices, n_classes, match",
    [
        ([], [], 3, "indptr"),  # empty
        ([1, 2], [0], 3, "indptr"),  # does not start at 0
        ([0, 2, 1, 2], [0, 1], 3, "indptr"),  # decreasing
        ([0, 1], [0, 1], 3, "indptr"),  # ends before nnz
        ([0, 3], [0, 1], 3, "indptr"),  # ends after nnz
        ([[0, 1]], [0], 3, "indptr"),  # 2-D
        (0, [], 3, "indptr"),  # 0-D
        ([0, 1], [[0]], 3, "indices"),  # 2-D
        ([0, 1], [3], 3, "indices"),  # out of range
        ([0, 1], [-1], 3, "indices"),  # negative
        ([0, 1], [0], 0, "n_classes"),
        ([0, 1], [0], -2, "n_classes"),
        ([0, 2], [1, 1], 3, "indices"),  # duplicate
        (np.array([0, 2**63], dtype=np.uint64), [0], 3, "indptr"),  # uint64 overflow
    ],
)
def test_value_errors(indptr, indices, n_classes, match):
    with pytest.raises(ValueError, match=match):
        MultiLabel(indptr, indices, n_classes)


@pytest.mark.parametrize(
    "indptr, indices, n_classes, match",
    [
        ([0.0, 1.0], [0], 3, "indptr"),
        (np.array([0, 1], dtype=bool), [0], 3, "indptr"),
        ([0, 1], [0.0], 3, "indices"),
        ([0, 1], np.array([True]), 3, "indices"),
        ([0, 1], ["a"], 3, "indices"),
        ([0, 1], np.array([], dtype=np.float64), 3, "indices"),
        ([0, 1], [0], 3.0, "n_classes"),
        ([0, 1], [0], True, "n_classes"),
        ([0, 1], [0], "3", "n_classes"),
        ([0, 1], [0], None, "n_classes"),
    ],
)
def test_type_errors(indptr, indices, n_classes, match):
    with pytest.raises(TypeError, match=match):
        MultiLabel(indptr, indices, n_classes)


def test_out_of_range_message_names_row_and_value():
    with pytest.raises(ValueError, match=r"indices: row 2 has class id 9.*n_classes=5"):
        MultiLabel([0, 1, 1, 3], [0, 2, 9], 5)
    with pytest.raises(ValueError, match=r"indices: row 1 has class id -4"):
        MultiLabel([0, 1, 2], [0, -4], 5)


def test_duplicate_message_names_row_and_index():
    with pytest.raises(ValueError, match=r"indices: row 1 contains class id 4 more than once"):
        MultiLabel([0, 1, 4], [4, 4, 0, 4], 5)  # unsorted row with a duplicate
    with pytest.raises(ValueError, match=r"row 0 contains class id 2"):
        MultiLabel([0, 2], [2, 2], 5)


def test_same_index_in_different_rows_is_fine():
    y = MultiLabel([0, 2, 4], [3, 1, 3, 1], 4)
    np.testing.assert_array_equal(y.indices, [1, 3, 1, 3])


@pytest.mark.parametrize(
    "values, exc",
    [
        ([1.0, np.nan], ValueError),
        ([np.inf, 1.0], ValueError),
        ([1.0, -np.inf], ValueError),
        ([1.0, -0.5], ValueError),
        ([1.0], ValueError),  # wrong length
        ([1.0, 2.0, 3.0], ValueError),
        ([[1.0, 2.0]], ValueError),  # 2-D
        (np.array([1 + 0j, 1]), TypeError),
        (["a", "b"], TypeError),
    ],
)
def test_values_errors(values, exc):
    with pytest.raises(exc, match="values"):
        MultiLabel([0, 2], [0, 1], 3, values=values)


def test_failed_validation_leaves_inputs_untouched():
    indptr = np.array([0, 2, 4], dtype=np.int64)
    indices = np.array([3, 1, 2, 2], dtype=np.int64)
    before = indices.copy()
    with pytest.raises(ValueError):
        MultiLabel(indptr, indices, 4)
    np.testing.assert_array_equal(indices, before)


# ------------------------------------------------------------- from_lists


def test_from_lists():
    y = MultiLabel.from_lists([[3, 1], [], (0,), range(2, 4), np.array([4])], 5)
    assert_canonical(y)
    np.testing.assert_array_equal(y.indptr, [0, 2, 2, 3, 5, 6])
    np.testing.assert_array_equal(y.indices, [1, 3, 0, 2, 3, 4])
    assert y.values is None


def test_from_lists_generator_and_numpy_ints():
    y = MultiLabel.from_lists(([np.int32(i)] for i in range(3)), np.int64(3))
    np.testing.assert_array_equal(y.indices, [0, 1, 2])


def test_from_lists_errors():
    with pytest.raises(TypeError, match=r"rows\[1\]"):
        MultiLabel.from_lists([[0], 1], 3)
    with pytest.raises(TypeError, match="rows"):
        MultiLabel.from_lists([[0.5]], 3)
    with pytest.raises(ValueError, match=r"row 0 contains class id 1"):
        MultiLabel.from_lists([[1, 1]], 3)
    with pytest.raises(ValueError, match="indices: row 1"):
        MultiLabel.from_lists([[1], [3]], 3)
    with pytest.raises(ValueError, match="n_classes"):
        MultiLabel.from_lists([[0]], 0)


# ------------------------------------------------------------- from_dense


def test_from_dense_binary():
    d = np.array([[0, 1, 0], [0, 0, 0], [1, 0, 1]], dtype=np.float32)
    y = MultiLabel.from_dense(d)
    assert_canonical(y)
    assert y.values is None
    np.testing.assert_array_equal(y.indptr, [0, 1, 1, 3])
    np.testing.assert_array_equal(y.indices, [1, 0, 2])
    np.testing.assert_array_equal(y.to_dense(), d)


def test_from_dense_values_and_bool_and_lists():
    d = np.array([[0, 0.5, 2.0], [1.0, 0, 0]])
    y = MultiLabel.from_dense(d)
    np.testing.assert_array_equal(y.values, [0.5, 2.0, 1.0])
    np.testing.assert_array_equal(y.to_dense(np.float64), d)
    yb = MultiLabel.from_dense(d > 0.6)
    assert yb.values is None
    np.testing.assert_array_equal(yb.indices, [2, 0])
    yl = MultiLabel.from_dense([[0, 3], [0, 0]])
    np.testing.assert_array_equal(yl.values, [3.0])


def test_from_dense_errors():
    with pytest.raises(ValueError, match="y"):
        MultiLabel.from_dense([0, 1, 0])
    with pytest.raises(ValueError, match="y"):
        MultiLabel.from_dense(np.zeros((2, 0)))
    with pytest.raises(ValueError, match="y"):
        MultiLabel.from_dense([[0, -1.0]])
    with pytest.raises(ValueError, match="y"):
        MultiLabel.from_dense([[0, np.nan]])
    with pytest.raises(TypeError, match="y"):
        MultiLabel.from_dense(np.array([[1j]]))


# ------------------------------------------------------------- from_scipy


SPARSE_CLASSES = [
    sp.csr_matrix, sp.csc_matrix, sp.coo_matrix, sp.lil_matrix,
    sp.csr_array, sp.csc_array, sp.coo_array, sp.dok_array,
]


@pytest.mark.parametrize("cls", SPARSE_CLASSES)
def test_from_scipy_formats(cls):
    d = np.array([[0, 0.5, 0, 2.0], [0, 0, 0, 0], [1.0, 0, 0, 0]])
    m = cls(d)
    y = MultiLabel.from_scipy(m)
    assert_canonical(y)
    assert y.shape == (3, 4)
    np.testing.assert_array_equal(y.to_dense(np.float64), d)
    np.testing.assert_array_equal(m.toarray(), d)  # input untouched


def test_from_scipy_all_ones_gives_none():
    y = MultiLabel.from_scipy(sp.csr_array(np.eye(3)))
    assert y.values is None
    y = MultiLabel.from_scipy(sp.csr_array(np.eye(3, dtype=bool)))
    assert y.values is None


def test_from_scipy_explicit_zero_is_a_positive():
    m = sp.csr_array(
        (np.array([0.0, 1.0]), np.array([1, 2]), np.array([0, 2, 2])), shape=(2, 3)
    )
    y = MultiLabel.from_scipy(m)
    assert y.nnz == 2
    np.testing.assert_array_equal(y.indices, [1, 2])
    np.testing.assert_array_equal(y.values, [0.0, 1.0])
    np.testing.assert_array_equal(y.row_sums(), [1.0, 0.0])


def test_from_scipy_coo_duplicates_summed():
    m = sp.coo_matrix(([1.0, 1.0, 0.5], ([0, 0, 1], [2, 2, 0])), shape=(2, 3))
    y = MultiLabel.from_scipy(m)
    np.testing.assert_array_equal(y.indices, [2, 0])
    np.testing.assert_array_equal(y.values, [2.0, 0.5])


def test_from_scipy_noncanonical_csr_duplicates_summed_and_input_untouched():
    data = np.array([1.0, 1.0, 1.0])
    indices = np.array([2, 0, 2], dtype=np.int32)
    indptr = np.array([0, 3], dtype=np.int32)
    m = sp.csr_array((data, indices, indptr), shape=(1, 3))
    y = MultiLabel.from_scipy(m)
    np.testing.assert_array_equal(y.indices, [0, 2])
    np.testing.assert_array_equal(y.values, [1.0, 2.0])
    np.testing.assert_array_equal(m.indices, [2, 0, 2])
    np.testing.assert_array_equal(m.data, [1.0, 1.0, 1.0])


def test_from_scipy_n_classes():
    m = sp.csr_array(np.eye(2, 3))
    assert MultiLabel.from_scipy(m, n_classes=10).shape == (2, 10)
    with pytest.raises(ValueError, match="n_classes"):
        MultiLabel.from_scipy(m, n_classes=2)


def test_from_scipy_errors():
    with pytest.raises(TypeError, match="matrix"):
        MultiLabel.from_scipy(np.eye(2))
    with pytest.raises(ValueError, match="matrix"):
        MultiLabel.from_scipy(sp.csr_array(np.array([[-1.0, 0]])))
    with pytest.raises(ValueError, match="matrix"):
        MultiLabel.from_scipy(sp.csr_array(np.array([[np.nan, 0]])))
    with pytest.raises(TypeError, match="matrix"):
        MultiLabel.from_scipy(sp.csr_array(np.array([[1j, 0]])))
    with pytest.raises(ValueError, match="matrix"):
        MultiLabel.from_scipy(sp.csr_array((2, 0)))


# ------------------------------------------------------------ conversions


def test_to_dense_dtypes():
    y = MultiLabel([0, 2, 3], [0, 2, 1], 3, values=[0.5, 2.0, 1.0])
    d = y.to_dense()
    assert d.dtype == np.float32
    np.testing.assert_array_equal(d, [[0.5, 0, 2.0], [0, 1.0, 0]])
    assert y.to_dense(np.float64).dtype == np.float64
    yb = MultiLabel([0, 1, 1], [2], 3)
    np.testing.assert_array_equal(yb.to_dense(bool), [[False, False, True], [False] * 3])


def test_to_scipy():
    y = MultiLabel([0, 2, 3], [0, 2, 1], 3, values=[0.5, 2.0, 1.0])
    m = y.to_scipy()
    assert isinstance(m, sp.csr_array)
    assert m.shape == (2, 3)
    np.testing.assert_array_equal(m.toarray(), y.to_dense(np.float64))
    mm = y.to_scipy(np.float32, as_matrix=True)
    assert isinstance(mm, sp.csr_matrix) and mm.dtype == np.float32
    # the result is independent of the container
    m.data[:] = 7
    m.indices[:] = 0
    np.testing.assert_array_equal(y.values, [0.5, 2.0, 1.0])
    np.testing.assert_array_equal(y.indices, [0, 2, 1])
    ones = MultiLabel([0, 1], [1], 2).to_scipy()
    np.testing.assert_array_equal(ones.toarray(), [[0.0, 1.0]])


def test_round_trips():
    rng = np.random.default_rng(0)
    d = (rng.random((20, 30)) < 0.1) * rng.integers(1, 4, (20, 30)) / 2.0
    d[3] = 0  # an empty row
    y = MultiLabel.from_dense(d)
    np.testing.assert_array_equal(y.to_dense(np.float64), d)
    z = MultiLabel.from_scipy(y.to_scipy())
    np.testing.assert_array_equal(z.indptr, y.indptr)
    np.testing.assert_array_equal(z.indices, y.indices)
    np.testing.assert_array_equal(z.values, y.values)
    np.testing.assert_array_equal(y.to_scipy().toarray(), d)
    # binary
    b = d > 0
    yb = MultiLabel.from_dense(b)
    assert yb.values is None
    assert MultiLabel.from_scipy(yb.to_scipy()).values is None
    np.testing.assert_array_equal(yb.to_dense(bool), b)
    lists = [list(np.flatnonzero(r)) for r in b]
    yl = MultiLabel.from_lists(lists, 30)
    np.testing.assert_array_equal(yl.indices, yb.indices)
    np.testing.assert_array_equal(yl.indptr, yb.indptr)


def test_row_sums_and_counts():
    y = MultiLabel([0, 3, 3, 4], [0, 1, 2, 1], 3, values=[0.5, 0.25, 1.0, 0.0])
    c = y.row_counts()
    assert c.dtype == np.int64
    np.testing.assert_array_equal(c, [3, 0, 1])
    s = y.row_sums()
    assert s.dtype == np.float64
    np.testing.assert_array_equal(s, [1.75, 0.0, 0.0])
    np.testing.assert_array_equal(y.row_ids(), [0, 0, 0, 2])
    y1 = MultiLabel([0, 3, 3, 4], [0, 1, 2, 1], 3)
    np.testing.assert_array_equal(y1.row_sums(), [3.0, 0.0, 1.0])
    assert y1.row_sums().dtype == np.float64


# ------------------------------------------------------------- XC files


def test_xc_small_fixture():
    y = MultiLabel.from_xc_file(DATA / "xc_small.txt")
    assert_canonical(y)
    assert y.shape == (5, 8)
    assert y.values is None
    np.testing.assert_array_equal(y.indptr, [0, 2, 2, 4, 5, 5])
    np.testing.assert_array_equal(y.indices, [0, 3, 1, 7, 2])
    # str path, binary and text file objects give the same
    for src in (str(DATA / "xc_small.txt"),):
        np.testing.assert_array_equal(MultiLabel.from_xc_file(src).indices, y.indices)
    with open(DATA / "xc_small.txt", "rb") as f:
        z = MultiLabel.from_xc_file(f)
        assert not f.closed
    np.testing.assert_array_equal(z.indptr, y.indptr)
    with open(DATA / "xc_small.txt") as f:
        z = MultiLabel.from_xc_file(f)
    np.testing.assert_array_equal(z.indices, y.indices)


def test_xc_small_n_classes():
    y = MultiLabel.from_xc_file(DATA / "xc_small.txt", n_classes=20)
    assert y.n_classes == 20
    with pytest.raises(ValueError, match="n_classes"):
        MultiLabel.from_xc_file(DATA / "xc_small.txt", n_classes=7)


def test_xc_duplicates_fixture():
    with pytest.raises(ValueError, match=r"line 2: label 3 appears more than once"):
        MultiLabel.from_xc_file(DATA / "xc_duplicates.txt")
    y = MultiLabel.from_xc_file(DATA / "xc_duplicates.txt", duplicates="drop")
    # no header: n_classes = max label + 1
    assert y.shape == (3, 4)
    np.testing.assert_array_equal(y.indptr, [0, 2, 4, 4])
    np.testing.assert_array_equal(y.indices, [0, 2, 1, 3])
    with pytest.raises(ValueError, match="duplicates"):
        MultiLabel.from_xc_file(DATA / "xc_duplicates.txt", duplicates="sum")


def test_xc_gzip(tmp_path):
    p = tmp_path / "x.txt.gz"
    with gzip.open(p, "wb") as f:
        f.write((DATA / "xc_small.txt").read_bytes())
    y = MultiLabel.from_xc_file(p)
    np.testing.assert_array_equal(y.indices, [0, 3, 1, 7, 2])
    with gzip.open(p, "rb") as f:  # an open binary (gzip) file object
        y = MultiLabel.from_xc_file(f)
        assert not f.closed
    np.testing.assert_array_equal(y.indices, [0, 3, 1, 7, 2])
    y = MultiLabel.from_xc_file(io.BytesIO(b"1,0 2:1\n"))
    np.testing.assert_array_equal(y.indices, [0, 1])


def test_xc_parsing_details():
    text = "0 1:1\r\n\t3:1\n5:1.0 6:2\n2,1\n"  # CRLF, tab-started, feature-first, label-only
    y = MultiLabel.from_xc_file(io.StringIO(text))
    np.testing.assert_array_equal(y.indptr, [0, 1, 1, 1, 3])
    np.testing.assert_array_equal(y.indices, [0, 1, 2])
    assert y.n_classes == 3
    # a first line that is not exactly three integers is data, not a header
    y = MultiLabel.from_xc_file(io.StringIO("1 2:3\n"))
    assert y.shape == (1, 2)


def test_xc_header_errors_and_edge_cases():
    with pytest.raises(ValueError, match="header announces 3 points"):
        MultiLabel.from_xc_file(io.StringIO("3 2 4\n0 1:1\n"))
    with pytest.raises(ValueError, match=r"line 3: label 4 is outside"):
        MultiLabel.from_xc_file(io.StringIO("2 2 4\n0 1:1\n4 1:1\n"))
    with pytest.raises(ValueError, match="line 3"):
        MultiLabel.from_xc_file(io.StringIO("2 2 4\n0 1:1\n1,x 1:1\n"))
    with pytest.raises(ValueError, match="line 1"):
        MultiLabel.from_xc_file(io.StringIO("1,,2 0:1\n"))
    with pytest.raises(ValueError, match=r"line 1: label -1 is negative"):
        MultiLabel.from_xc_file(io.StringIO("-1 0:1\n"))
    with pytest.raises(ValueError, match="n_classes"):
        MultiLabel.from_xc_file(io.StringIO(" 0:1\n\n"))
    with pytest.raises(ValueError, match="n_classes"):
        MultiLabel.from_xc_file(io.StringIO(""))
    y = MultiLabel.from_xc_file(io.StringIO(""), n_classes=3)
    assert y.shape == (0, 3)
    y = MultiLabel.from_xc_file(io.StringIO("0 10 3\n"))
    assert y.shape == (0, 3)
    # blank lines after the announced points are ignored, but not data lines
    y = MultiLabel.from_xc_file(io.StringIO("1 2 3\n2 0:1\n\n\n"))
    assert y.shape == (1, 3)
    with pytest.raises(ValueError, match="header"):
        MultiLabel.from_xc_file(io.StringIO("1 2 3\n2 0:1\n1 0:1\n"))
    # explicit n_classes without a header
    with pytest.raises(ValueError, match=r"line 2: label 5"):
        MultiLabel.from_xc_file(io.StringIO("0\n5 1:1\n"), n_classes=3)


# ---------------------------------------------------------- as_multilabel


def test_as_multilabel():
    y = MultiLabel([0, 1, 2], [0, 2], 3)
    assert as_multilabel(y, 3) is y
    assert as_multilabel(y, 3, n_rows=2) is y
    with pytest.raises(ValueError, match="targets"):
        as_multilabel(y, 4)
    with pytest.raises(ValueError, match="targets"):
        as_multilabel(y, 3, n_rows=5)
    for m in (sp.csr_matrix(np.eye(2, 3)), sp.coo_array(np.eye(2, 3))):
        z = as_multilabel(m, 3)
        assert isinstance(z, MultiLabel) and z.shape == (2, 3)
        with pytest.raises(ValueError, match="targets"):
            as_multilabel(m, 4)
        with pytest.raises(ValueError, match="targets"):
            as_multilabel(m, 3, n_rows=3)
    for other in (np.zeros((2, 3)), np.array([0, 1]), [[0, 1]], None, 3):
        assert as_multilabel(other, 3) is None


# ----------------------------------------------------------------- property


@st.composite
def sparse_matrices(draw):
    n = draw(st.integers(0, 8))
    c = draw(st.integers(1, 12))
    k = draw(st.integers(0, 3 * n * c // 2 + 1)) if n else 0
    rows = draw(st.lists(st.integers(0, max(n - 1, 0)), min_size=k, max_size=k))
    cols = draw(st.lists(st.integers(0, c - 1), min_size=k, max_size=k))
    data = draw(
        st.lists(
            st.sampled_from([0.0, 1.0, 1.0, 1.0, 0.25, 2.5, 1e-300, 1e300]),
            min_size=k,
            max_size=k,
        )
    )
    if n == 0:
        rows, cols, data = [], [], []
    fmt = draw(st.sampled_from(["csr", "csc", "coo"]))
    kind = draw(st.sampled_from(["array", "matrix"]))
    coo = (sp.coo_array if kind == "array" else sp.coo_matrix)(
        (np.array(data, dtype=np.float64), (np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64))),
        shape=(n, c),
    )
    return coo.asformat(fmt)


@settings(max_examples=200, deadline=None)
@given(sparse_matrices())
def test_property_from_scipy_to_dense(m):
    dense = m.toarray()
    y = MultiLabel.from_scipy(m)
    assert_canonical(y)
    assert y.shape == m.shape
    np.testing.assert_array_equal(y.to_dense(np.float64), dense)
    np.testing.assert_array_equal(y.to_scipy().toarray(), dense)
    assert np.allclose(y.row_sums(), dense.sum(axis=1), rtol=1e-12)
    np.testing.assert_array_equal(m.toarray(), dense)  # input untouched


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 10).flatmap(
        lambda c: st.tuples(
            st.just(c),
            st.lists(
                st.lists(st.integers(0, c - 1), unique=True, max_size=c), max_size=6
            ),
        )
    )
)
def test_property_from_lists_unsorted(args):
    c, rows = args
    rng = np.random.default_rng(len(rows))
    vals = [list(rng.random(len(r))) for r in rows]
    indptr = np.cumsum([0] + [len(r) for r in rows])
    flat = np.array([i for r in rows for i in r], dtype=np.int32)
    fvals = np.array([v for r in vals for v in r], dtype=np.float64)
    flat0, fvals0 = flat.copy(), fvals.copy()
    y = MultiLabel(indptr, flat, c, values=fvals)
    assert_canonical(y)
    expect = np.zeros((len(rows), c))
    for n, (r, v) in enumerate(zip(rows, vals)):
        expect[n, r] = v
    np.testing.assert_array_equal(y.to_dense(np.float64), expect)
    np.testing.assert_array_equal(flat, flat0)
    np.testing.assert_array_equal(fvals, fvals0)
    z = MultiLabel.from_lists(rows, c)
    np.testing.assert_array_equal(z.indices, y.indices)
    np.testing.assert_array_equal(z.indptr, y.indptr)


def test_lexsort_fallback(monkeypatch):
    # the combined-key sort needs n_rows * n_classes < 2**63; force the fallback
    monkeypatch.setattr(targets_mod, "_INT64_MAX", 0)
    y = MultiLabel([0, 3, 3, 5], [2, 0, 1, 4, 3], 5, values=[0.2, 0.0, 0.1, 0.4, 0.3])
    np.testing.assert_array_equal(y.indices, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(y.values, [0.0, 0.1, 0.2, 0.3, 0.4])
    y = MultiLabel([0, 2, 4], [1, 0, 0, 1], 5)
    np.testing.assert_array_equal(y.indices, [0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"row 1 contains class id 3"):
        MultiLabel([0, 2, 5], [1, 0, 3, 0, 3], 5)
