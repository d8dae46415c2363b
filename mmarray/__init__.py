"""mmarray: memory-mapped numpy arrays with a C core.

Map raw and ``.npy`` files (or anonymous memory) and get plain numpy arrays at
once: no parsing, no copy, pages loaded on first touch.
"""

from . import _core, _picture
from ._api import anonymous, create, open
from ._cache import EvictionWarning, advise, evict, prefetch
from ._core import PAGESIZE, Region
from ._distributed import install as _install_distributed
from ._flush import flush
from ._grow import grow
from ._joblib import install as _install_joblib
from ._lock import lock
from ._memmap import memmap
from ._named import named, unlink
from ._parallel import map_chunks
from ._picture import Residency, residency
from ._reducer import UnavailableArray
from ._reducer import install_reducer as _install_reducer
from ._ref import ArrayRef, share
from ._region import region
from ._sparse import DiskUsage, disk_usage, extents, punch
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
    "EvictionWarning",
    "Region",
    "UnavailableArray",
    "Residency",
    "__version__",
    "advise",
    "anonymous",
    "create",
    "disk_usage",
    "evict",
    "extents",
    "flush",
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
_install_joblib()  # ... and through loky and joblib.Parallel, once they are imported
_install_distributed()  # ... and through dask.distributed's serialization
_core._set_repr_html(_picture.region_html)  # Region._repr_html_ draws the resident pages
