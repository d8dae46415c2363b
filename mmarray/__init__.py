"""mmarray: memory-mapped numpy arrays with a C core.

Map raw and ``.npy`` files (or anonymous memory) and get plain numpy arrays at
once: no parsing, no copy, pages loaded on first touch.
"""

from ._api import Region, anonymous, create, open, region
from ._core import PAGESIZE
from ._memmap import memmap
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
    "PAGESIZE",
    "Region",
    "__version__",
    "anonymous",
    "create",
    "median",
    "median_estimate",
    "memmap",
    "nanmedian",
    "nanpercentile",
    "nanquantile",
    "open",
    "percentile",
    "quantile",
    "region",
]
