"""``fastxent._config``: the L2 size that sets the softmax CE cached-row cutoff, the CPU vendor
that sets how the sparse sigmoid kernels store their gradient, and integer
environment overrides (a bad value names its variable)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fastxent import _config


def _cache_entry(base, name, level, size):
    d = base / name
    d.mkdir()
    (d / "level").write_text(f"{level}\n")
    (d / "size").write_text(f"{size}\n")


@pytest.mark.parametrize("size,expected", [("2048K", 2 << 20), ("1M", 1 << 20),
                                           ("524288", 524288)])
def test_l2_bytes_reads_the_level_2_entry(tmp_path, size, expected):
    _cache_entry(tmp_path, "index0", 1, "48K")
    _cache_entry(tmp_path, "index1", 1, "32K")
    _cache_entry(tmp_path, "index2", 2, size)
    _cache_entry(tmp_path, "index3", 3, "480M")
    assert _config._l2_bytes(base=str(tmp_path)) == expected


def test_l2_bytes_default_without_sysfs(tmp_path):
    assert _config._l2_bytes(default=12345, base=str(tmp_path / "missing")) == 12345
    _cache_entry(tmp_path, "index0", 2, "garbage")
    assert _config._l2_bytes(default=12345, base=str(tmp_path)) == 12345


def test_cached_row_bytes_is_half_an_l2_or_the_override():
    assert _config.CACHED_ROW_BYTES > 0
    if not os.environ.get("FASTXENT_CACHED_ROW_BYTES"):
        assert _config.CACHED_ROW_BYTES == _config._l2_bytes() // 2


def test_env_int(monkeypatch):
    monkeypatch.delenv("FASTXENT_TEST_INT", raising=False)
    assert _config._env_int("FASTXENT_TEST_INT", 7) == 7
    monkeypatch.setenv("FASTXENT_TEST_INT", " 4096 ")
    assert _config._env_int("FASTXENT_TEST_INT", 7) == 4096
    for bad in ("1.5", "lots", "-3"):
        monkeypatch.setenv("FASTXENT_TEST_INT", bad)
        with pytest.raises(ValueError, match=r"FASTXENT_TEST_INT=.*non-negative integer"):
            _config._env_int("FASTXENT_TEST_INT", 7)


def test_bad_override_at_import_names_the_variable():
    env = dict(os.environ, FASTXENT_CACHED_ROW_BYTES="1MB")
    run = subprocess.run([sys.executable, "-c", "import fastxent"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert "FASTXENT_CACHED_ROW_BYTES='1MB'" in run.stderr
    env["FASTXENT_CACHED_ROW_BYTES"] = "4096"
    out = subprocess.run([sys.executable, "-c",
                          "from fastxent import _config; print(_config.CACHED_ROW_BYTES)"],
                         env=env, capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "4096"


def test_cpu_vendor_reads_proc_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n")
    assert _config._cpu_vendor(str(info)) == "AuthenticAMD"
    info.write_text("processor\t: 0\n")
    assert _config._cpu_vendor(str(info)) == ""
    assert _config._cpu_vendor(str(tmp_path / "missing")) == ""


def test_cpu_family_reads_proc_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\n"
                    "model\t\t: 2\nprocessor\t: 1\ncpu family\t: 25\n")
    assert _config._cpu_family(str(info)) == 26
    info.write_text("processor\t: 0\ncpu family\t: ?\n")
    assert _config._cpu_family(str(info)) == 0
    assert _config._cpu_family(str(tmp_path / "missing")) == 0


def test_sparse_sigmoid_stores_by_vendor_and_override(monkeypatch):
    # the module's setting is this machine's (under this environment's overrides)
    assert _config.SPARSE_SIGMOID_STORES == _config._stores(_config._cpu_vendor(),
                                                            _config._cpu_family())
    monkeypatch.delenv("FASTXENT_STREAM_STORES", raising=False)
    monkeypatch.delenv("FASTXENT_PREFETCH_BYTES", raising=False)
    assert _config._stores("AuthenticAMD") == (False, 0)
    assert _config._stores("AuthenticAMD", 25) == (False, 0)
    assert _config._stores("AuthenticAMD", 26) == (False, 2048)
    assert _config._stores("GenuineIntel", 6) == (True, 2048)
    assert _config._stores("GenuineIntel") == (True, 2048)
    assert _config._stores("") == (True, 2048)
    monkeypatch.setenv("FASTXENT_STREAM_STORES", "1")
    monkeypatch.setenv("FASTXENT_PREFETCH_BYTES", "4096")
    assert _config._stores("AuthenticAMD") == (True, 4096)
    monkeypatch.setenv("FASTXENT_STREAM_STORES", "0")
    assert _config._stores("GenuineIntel") == (False, 4096)
    monkeypatch.setenv("FASTXENT_STREAM_STORES", "yes")
    with pytest.raises(ValueError, match=r"FASTXENT_STREAM_STORES='yes': expected 0 or 1"):
        _config._stores("GenuineIntel")
