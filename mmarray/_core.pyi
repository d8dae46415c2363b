"""Type stubs for the C extension mmarray._core."""

from collections.abc import Callable
from types import TracebackType
from typing import Any

import numpy as np

PAGESIZE: int
MAX_WORKERS: int

class Region:
    """One mmap region (file-backed or anonymous) exporting the buffer protocol."""

    def __new__(
        cls,
        fileno: int,
        length: int = 0,
        offset: int = 0,
        *,
        access: str = "r",
        shared: bool = True,
        name: str | None = None,
    ) -> Region: ...
    @classmethod
    def open(
        cls, path: Any, length: int = 0, offset: int = 0, *, access: str = "r", shared: bool = True
    ) -> Region: ...
    @classmethod
    def anonymous(cls, length: int, *, shared: bool = True) -> Region: ...
    def close(self) -> None: ...
    def flush(self, offset: int = 0, size: int | None = None, *, sync: bool = True) -> None: ...
    def fileno(self) -> int: ...
    def dup(self) -> int: ...
    def _repr_html_(self) -> str | None: ...
    def __enter__(self) -> Region: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    def __len__(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    @property
    def size(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def access(self) -> str: ...
    @property
    def shared(self) -> bool: ...
    @property
    def closed(self) -> bool: ...
    @property
    def mapped(self) -> bool: ...
    @property
    def is_anonymous(self) -> bool: ...
    @property
    def exports(self) -> int: ...
    @property
    def name(self) -> str | None: ...
    @property
    def address(self) -> int: ...

def ndarray(
    region: Region,
    dtype: Any,
    shape: Any,
    offset: int = 0,
    fortran: bool = False,
    subtype: type[np.ndarray[Any, Any]] | None = None,
) -> np.ndarray[Any, Any]: ...
def _set_repr_html(func: Callable[[Region], str] | None, /) -> Callable[[Region], str] | None: ...

# ---- page cache (src/pages.c) ----

MADVICE: dict[str, int]
FADV_DONTNEED: int
FADV_WILLNEED: int

def madvise(region: Region, start: int, stop: int, advice: int, /) -> None: ...
def populate(region: Region, start: int, stop: int, /) -> None: ...
def touch(region: Region, start: int, stop: int, /) -> int: ...
def mincore(region: Region, start: int, stop: int, /) -> bytes: ...
def fadvise(region: Region, start: int, stop: int, advice: int, /) -> bool: ...
def writeback(region: Region, start: int, stop: int, /) -> bool: ...

# ---- sparse files (src/sparse.c) ----

def punch(region: Region, start: int, stop: int, /) -> int: ...
def extents(fd: int, start: int, stop: int, path: Any = None, /) -> list[tuple[int, int]]: ...

# ---- file identity (src/identity.c) ----

def file_identity(fd: int, /) -> tuple[int, int, int, tuple[tuple[str, int], ...]]: ...

# the selection engine (src/select/): median and quantiles
def select(
    x: np.ndarray[Any, Any],
    r: int,
    ranks: np.ndarray[Any, Any],
    workers: int = 1,
    progress: Any = None,
    region: Region | None = None,
    *,
    stream: int = 0,
) -> np.ndarray[Any, Any]: ...
def count_nan(
    x: np.ndarray[Any, Any],
    r: int,
    workers: int = 1,
    progress: Any = None,
    region: Region | None = None,
    *,
    stream: int = 0,
) -> np.ndarray[Any, Any]: ...
def first_nan(
    x: np.ndarray[Any, Any],
    r: int,
    lanes: np.ndarray[Any, Any],
    workers: int = 1,
    region: Region | None = None,
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]: ...

# the distributed radix selection's per-chunk kernels (src/select/keyhist.c): mmarray.dask
def key_histogram(
    x: np.ndarray[Any, Any],
    r: int,
    prefixes: np.ndarray[Any, Any],
    shift: int,
    bits: int,
    region: Region | None = None,
) -> np.ndarray[Any, Any]: ...
def key_window(
    x: np.ndarray[Any, Any],
    r: int,
    bounds: np.ndarray[Any, Any],
    region: Region | None = None,
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]: ...
def key_window_keys(
    x: np.ndarray[Any, Any],
    r: int,
    windows: np.ndarray[Any, Any],
    region: Region | None = None,
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]: ...
def key_collect(
    x: np.ndarray[Any, Any],
    r: int,
    prefixes: np.ndarray[Any, Any],
    shift: int,
    region: Region | None = None,
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]: ...
def key_values(keys: np.ndarray[Any, Any], dtype: Any, /) -> np.ndarray[Any, Any]: ...

# For the tests only, not part of the API: (sampled, windowed, missed), the long 16-bit
# lanes and the long 32/64-bit lanes since import whose first pass began with a sample,
# those counted through a window, and those the window missed (tests/test_median.py,
# tests/test_window64.py, tests/test_sigbus.py).
def _test_hist_passes() -> int: ...
def _test_slot_selects() -> int: ...
def _test_avx512(on: bool, /) -> tuple[bool, bool]: ...
def _test_window_counts() -> tuple[int, int, int]: ...
