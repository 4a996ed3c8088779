"""docs/compat.md runs as written and prints the numbers it shows.

Every ```python block of the page is executed in order, in one namespace. Each top-level
``print(...)`` statement must be followed, on its last line, by a comment holding what it prints;
the numbers of the printed text and of the comment must agree (rtol 1e-6: float32 logs may differ
from TensorFlow's in the last digit).
"""
import ast
import doctest
import re
from pathlib import Path

import numpy as np
import pytest

import fastxent.compat.keras
import fastxent.compat.tf

DOC = Path(__file__).resolve().parents[1] / "docs" / "compat.md"
NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _blocks():
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def _expected_prints(block: str):
    """The trailing comment of every top-level print statement, in order."""
    lines = block.split("\n")
    expected = []
    for node in ast.parse(block).body:
        call = getattr(node, "value", None)
        if isinstance(node, ast.Expr) and isinstance(call, ast.Call) \
                and getattr(call.func, "id", None) == "print":
            last = lines[node.end_lineno - 1]
            assert "#" in last, f"print without its expected output: {last!r}"
            expected.append(last.split("#", 1)[1].strip())
    return expected


def _numbers(text: str):
    return [float(t) for t in NUMBER.findall(text)]


def test_page_has_python_examples():
    assert len(_blocks()) >= 10


def test_every_example_runs_and_prints_its_numbers():
    printed = []
    namespace = {"print": lambda *args: printed.append(" ".join(str(a) for a in args))}
    checked = 0
    for block in _blocks():
        expected = _expected_prints(block)
        start = len(printed)
        exec(compile(block, str(DOC), "exec"), namespace)
        got = printed[start:]
        assert len(got) == len(expected), block
        for text, comment in zip(got, expected):
            want = _numbers(comment)
            have = _numbers(text)
            assert want and len(have) == len(want), (text, comment)
            np.testing.assert_allclose(have, want, rtol=1e-6, atol=1e-12,
                                       err_msg=f"printed {text!r}, the page says {comment!r}")
            checked += 1
    assert checked >= 30


def test_the_page_names_every_helper():
    text = DOC.read_text()
    for module in (fastxent.compat.keras, fastxent.compat.tf):
        for name in module.__all__:
            assert name in text, name


@pytest.mark.parametrize("module", [fastxent.compat.keras, fastxent.compat.tf],
                         ids=["keras", "tf"])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 3 and result.failed == 0
