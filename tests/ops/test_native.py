"""The native module greenai._C: build facts, CUDA run-time queries, static CUDA runtime.

Needs the extension built (``pip install --no-build-isolation -e . -Cbuild-dir=build/dev``).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

import greenai

BUILD_INFO_TYPES: dict[str, type | tuple[type, ...]] = {
    "version": str,
    "build_type": str,
    "compiler": str,
    "cuda_option": str,
    "cuda": bool,
    "cuda_version": (str, type(None)),
    "cuda_architectures": (str, type(None)),
    "cuda_compiler": (str, type(None)),
}


@pytest.fixture(scope="module")
def native() -> ModuleType:
    try:
        return importlib.import_module("greenai._C")
    except ImportError as exc:
        pytest.fail(
            f"greenai._C is not built or not importable ({exc}); build it with "
            "`pip install --no-build-isolation --no-deps -e . -Cbuild-dir=build/dev`"
        )


def test_build_info_keys_and_types(native: ModuleType) -> None:
    info = native.build_info()
    assert isinstance(info, dict)
    for key, expected in BUILD_INFO_TYPES.items():
        assert key in info, f"build_info() lacks {key!r}"
        assert isinstance(info[key], expected), f"build_info()[{key!r}] = {info[key]!r}"
    assert info["cuda_option"] in {"AUTO", "ON", "OFF"}
    assert info["build_type"]
    assert info["compiler"]


def test_build_info_version_matches_package(native: ModuleType) -> None:
    assert native.build_info()["version"] == greenai.__version__


def test_build_info_cuda_fields_consistent(native: ModuleType) -> None:
    info = native.build_info()
    if info["cuda"]:
        assert info["cuda_option"] != "OFF"
        assert re.fullmatch(r"\d+\.\d+", info["cuda_version"]), info["cuda_version"]
        assert info["cuda_architectures"]
        assert info["cuda_compiler"]
    else:
        assert info["cuda_option"] != "ON"
        assert info["cuda_version"] is None
        assert info["cuda_architectures"] is None
        assert info["cuda_compiler"] is None


def test_cuda_compiled_in_when_nvcc_available(native: ModuleType) -> None:
    info = native.build_info()
    if not info["cuda"]:
        if info["cuda_option"] == "OFF":
            pytest.skip("greenai._C was built with GREENAI_CUDA=OFF")
        if shutil.which("nvcc") is None:
            pytest.skip("greenai._C was built without CUDA and nvcc is not on PATH")
    assert info["cuda"], (
        "nvcc is on PATH but greenai._C was built without CUDA (GREENAI_CUDA=AUTO did not "
        "find it at build time?); rebuild, or build with GREENAI_CUDA=OFF on purpose"
    )


def test_cuda_device_count_is_an_int_and_stable(native: ModuleType) -> None:
    first = native.cuda_device_count()
    second = native.cuda_device_count()
    assert isinstance(first, int)
    assert first >= 0
    assert first == second


def test_cuda_driver_version_type(native: ModuleType) -> None:
    version = native.cuda_driver_version()
    assert version is None or (isinstance(version, int) and version > 0)
    if not native.build_info()["cuda"]:
        assert version is None


def test_no_devices_without_cuda_build(native: ModuleType) -> None:
    if native.build_info()["cuda"]:
        pytest.skip("module built with CUDA; the count depends on this machine")
    assert native.cuda_device_count() == 0


def test_no_devices_without_driver(native: ModuleType) -> None:
    # Without a driver there is no usable device: 0, twice, and no exception (the CUDA
    # error state is cleared in between).
    if native.cuda_driver_version() is not None:
        pytest.skip("a CUDA driver is installed here")
    assert native.cuda_device_count() == 0
    assert native.cuda_device_count() == 0


@pytest.mark.gpu
def test_cuda_device_count_on_gpu(native: ModuleType) -> None:
    if native.cuda_device_count() == 0:
        pytest.skip("no usable CUDA device")
    assert native.cuda_device_count() >= 1
    assert native.build_info()["cuda"]
    driver = native.cuda_driver_version()
    assert driver is not None
    assert driver >= 1000


def _ldd(path: str) -> str:
    ldd = shutil.which("ldd")
    if ldd is None:
        pytest.skip("ldd is not available")
    result = subprocess.run([ldd, path], capture_output=True, text=True, check=False, timeout=60)
    if result.returncode != 0:
        pytest.skip(f"ldd failed on {path}: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def test_no_dynamic_cudart_dependency(native: ModuleType) -> None:
    assert native.__file__ is not None
    output = _ldd(native.__file__)
    needed = [line.split()[0] for line in output.splitlines() if line.strip()]
    assert needed, f"ldd printed nothing for {native.__file__}"
    cudart = [lib for lib in needed if lib.startswith(("libcudart", "libcuda."))]
    assert not cudart, f"greenai._C links CUDA dynamically: {cudart} (ldd: {output})"


def test_no_test_only_code_ships_in_the_package(native: ModuleType) -> None:
    # The CUDA simulator is greenai_cuda_sim, a top-level test module built only with
    # GREENAI_CUDA_SIM=ON (testing/cuda_sim/): never inside greenai, and greenai._C itself
    # is built without sanitizers.
    assert native.__file__ is not None
    assert importlib.util.find_spec("greenai._cuda_sim") is None
    here = Path(native.__file__)
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    extensions = [p.name for p in here.parent.iterdir() if p.name.endswith(suffixes)]
    assert extensions == [here.name]
    if shutil.which("ldd") is not None:
        assert "libubsan" not in _ldd(str(here))


def test_cuda_runtime_symbols_not_exported(native: ModuleType) -> None:
    # The static CUDA runtime stays private to the module (linked with --exclude-libs),
    # so it never clashes with a libcudart.so that torch or another extension loaded.
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm is not available")
    assert native.__file__ is not None
    result = subprocess.run(
        [nm, "-D", "--defined-only", native.__file__],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        pytest.skip(f"nm failed: {result.stderr.strip()}")
    exported = [line.split()[-1] for line in result.stdout.splitlines() if line.strip()]
    assert "PyInit__C" in exported
    leaked = [name for name in exported if name.startswith(("cuda", "__cuda", "cu"))]
    assert not leaked, f"greenai._C exports CUDA runtime symbols: {leaked[:10]}"


def test_the_native_format_numbers_are_the_python_ones() -> None:
    """csrc/formats.h and greenai.ops.formats describe the same formats."""
    torch = pytest.importorskip("torch")
    from greenai import _C
    from greenai.ops import _native_quant, formats

    native = _C.format_constants()
    assert (native["int8_max"], native["int4_max"]) == (
        formats.qrange(8, symmetric=True)[1],
        formats.qrange(4, symmetric=True)[1],
    )
    assert formats.qrange(8, symmetric=False)[0] == -native["int8_max"] - 1
    assert formats.qrange(4, symmetric=False)[0] == -native["int4_max"] - 1
    assert native["int4_offset"] == formats.INT4_OFFSET
    assert native["int4_block"] == formats.INT4_BLOCK
    assert native["group_multiple"] == formats.GROUP_MULTIPLE
    assert native["per_tensor"] == formats.PER_TENSOR
    assert native["meta_bytes_per_8"] == formats.sparse_meta_shape(1, 8)[1]
    codes = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}
    assert set(codes) == set(formats.FLOAT_DTYPES)
    assert {dtype: native[name] for dtype, name in codes.items()} == _native_quant._DTYPE_CODES
