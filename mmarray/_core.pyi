"""Type stubs for the C extension mmarray._core."""

from types import TracebackType
from typing import Any

import numpy as np

PAGESIZE: int

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

# selection kernels (kernels.c): median and quantiles
def select(
    x: np.ndarray[Any, Any],
    r: int,
    ranks: np.ndarray[Any, Any],
    workers: int = 1,
    progress: Any = None,
) -> np.ndarray[Any, Any]: ...
def count_nan(
    x: np.ndarray[Any, Any], r: int, workers: int = 1, progress: Any = None
) -> np.ndarray[Any, Any]: ...
