"""mmarray: memory-mapped numpy arrays with a C core.

Map raw and ``.npy`` files (or anonymous memory) and get plain numpy arrays at
once: no parsing, no copy, pages loaded on first touch.
"""

from ._api import Region, anonymous, create, open, region
from ._core import PAGESIZE
from ._memmap import memmap
from ._pages import (
    DiskUsage,
    Residency,
    advise,
    disk_usage,
    evict,
    extents,
    grow,
    prefetch,
    punch,
    residency,
)
from ._version import __version__

__all__ = [
    "PAGESIZE",
    "DiskUsage",
    "Region",
    "Residency",
    "__version__",
    "advise",
    "anonymous",
    "create",
    "disk_usage",
    "evict",
    "extents",
    "grow",
    "memmap",
    "open",
    "prefetch",
    "punch",
    "region",
    "residency",
]
