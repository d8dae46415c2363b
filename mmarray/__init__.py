"""mmarray: memory-mapped numpy arrays with a C core.

Map raw and ``.npy`` files (or anonymous memory) and get plain numpy arrays at
once: no parsing, no copy, pages loaded on first touch.
"""

from . import _core, _pages
from ._api import Region, anonymous, create, open, region
from ._core import PAGESIZE
from ._lock import lock
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
from ._parallel import map_chunks
from ._share import ArrayRef, _install_reducer, named, share, unlink
from ._stats import (
    median,
    median_estimate,
    nanmedian,
    nanpercentile,
    nanquantile,
    percentile,
    quantile,
)
from ._version import __version__

__all__ = [
    "ArrayRef",
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
    "lock",
    "map_chunks",
    "median",
    "median_estimate",
    "memmap",
    "nanmedian",
    "nanpercentile",
    "nanquantile",
    "open",
    "prefetch",
    "punch",
    "percentile",
    "quantile",
    "region",
    "residency",
    "share",
    "named",
    "unlink",
]

_install_reducer()  # arrays sent through multiprocessing travel by reference
_core._set_repr_html(_pages.region_html)  # Region._repr_html_ draws the resident pages
