"""Type stub for ``greenai._C``, the native core built from ``csrc/`` (see CMakeLists.txt).

``BuildInfo`` exists only for type checkers: the module returns a plain ``dict``. Import it
under ``if TYPE_CHECKING:`` if you need to name it.
"""

from typing import TypedDict, type_check_only

@type_check_only
class BuildInfo(TypedDict):
    version: str
    """The package version, equal to ``greenai.__version__``."""
    build_type: str
    """CMake configuration, e.g. ``"Release"``."""
    compiler: str
    """C++ compiler id and version, e.g. ``"GNU 12.2.0"``."""
    cuda_option: str
    """The ``GREENAI_CUDA`` option the module was configured with: AUTO, ON or OFF."""
    cuda: bool
    """True when the CUDA kernels were compiled in."""
    cuda_version: str | None
    """CUDA toolkit (runtime) version built against, e.g. ``"13.0"``; None without CUDA."""
    cuda_architectures: str | None
    """Comma-separated CMake CUDA architectures, e.g. ``"80-real,90-real,90-virtual"``."""
    cuda_compiler: str | None
    """CUDA compiler id and version, e.g. ``"NVIDIA 13.0.88"``; None without CUDA."""

def build_info() -> BuildInfo:
    """How this module was built."""

def cuda_device_count() -> int:
    """Number of usable CUDA devices.

    0 without CUDA compiled in, without a driver or without a device; never raises for
    those and clears the CUDA error state. Raises ``RuntimeError`` for any other CUDA error.
    The first call initialises the CUDA driver in this process.
    """

def cuda_driver_version() -> int | None:
    """Installed CUDA driver version as ``1000 * major + 10 * minor``, or None without a
    driver or without CUDA compiled in."""
