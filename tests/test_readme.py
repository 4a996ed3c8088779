"""The README's Python examples run as written, and its numbers agree with the reference."""
import pathlib
import re

import numpy as np

import fastxent
from fastxent import reference

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert _python_blocks(), "README.md lost its Python examples"


def test_readme_examples_run_and_match_reference():
    namespace = {}
    for block in _python_blocks():
        exec(compile(block, str(README), "exec"), namespace)
    logits, labels, targets = namespace["logits"], namespace["labels"], namespace["targets"]
    ref_loss, ref_grad = reference.softmax_cross_entropy(logits, labels, label_smoothing=0.1,
                                                         return_grad=True)
    np.testing.assert_allclose(namespace["loss"], reference.sigmoid_focal_loss(
        logits, targets, gamma=2.0, alpha=0.25), rtol=1e-5)
    np.testing.assert_allclose(namespace["bce"], reference.sigmoid_binary_cross_entropy(
        logits, targets, pos_weight=2.0), rtol=1e-5)
    np.testing.assert_allclose(namespace["pal_n"], reference.softmax_cross_entropy(
        logits, targets, reduction="none"), rtol=1e-5, atol=1e-6)
    assert namespace["grad"] is namespace["buffer"]
    got_loss, got_grad = fastxent.softmax_cross_entropy(logits, labels, label_smoothing=0.1,
                                                        return_grad=True)
    np.testing.assert_allclose(got_loss, ref_loss, rtol=1e-5)
    np.testing.assert_allclose(got_grad, ref_grad, atol=1e-6 * np.abs(ref_grad).max())


def _expected_prints(block):
    """The ``# value`` comment lines right after each ``print(...)`` line of a block."""
    expected, lines = [], block.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("print("):
            j = i + 1
            while j < len(lines) and lines[j].startswith("# "):
                expected.append(lines[j][2:].strip())
                j += 1
    return expected


def test_readme_printed_numbers(capsys):
    """Every ``print`` in the README is followed by the output it really prints."""
    namespace = {}
    checked = 0
    for block in _python_blocks():
        capsys.readouterr()
        exec(compile(block, str(README), "exec"), namespace)
        want = _expected_prints(block)
        if want:
            assert capsys.readouterr().out.split("\n")[:len(want)] == want
            checked += len(want)
    assert checked >= 1
