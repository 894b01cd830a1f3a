"""Generated kernels are written to a cache folder so that numba can cache their compiled code on disk."""

from spikeinterface_dic.simulate import codegen

SOURCE = "def kernel(x):\n    total = 0.0\n    for i in prange(x.shape[0]):\n        total += x[i]\n    return total\n"


def test_kernel_module_is_written_once_and_compiled(tmp_path, monkeypatch):
    import numpy as np

    monkeypatch.setenv("SPIKEINTERFACE_DIC_CACHE_DIR", str(tmp_path))
    kernel = codegen._load_module(SOURCE, "unit_test")
    assert kernel(np.arange(4.0)) == 6.0
    files = list((tmp_path / "kernels").glob("sdic_kernel_unit_test_*.py"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    codegen._load_module(SOURCE, "unit_test")
    assert files[0].stat().st_mtime_ns == stamp  # never rewritten: numba's cache key stays valid


def test_unwritable_cache_folder_falls_back_to_memory(tmp_path, monkeypatch):
    import numpy as np

    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    monkeypatch.setenv("SPIKEINTERFACE_DIC_CACHE_DIR", str(blocker))
    assert codegen._load_module(SOURCE, "unit_test_fallback")(np.ones(3)) == 3.0
