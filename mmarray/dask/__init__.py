"""mmarray on dask: arrays whose tasks hold file references, not data.

``pip install mmarray[dask]`` installs dask and distributed. Every task of a graph
made here holds a few hundred bytes (a file's path and identity, a byte offset,
shape, strides, dtype); the worker that runs it maps the file where it lies. See
``docs/dask.md`` for the deployment on several machines (a shared file system, the
same path or a path map). ``median``, ``quantile``, ``percentile`` and their ``nan*``
forms are numpy's exact statistics over any dask array.
"""

try:
    import dask.array  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised without dask installed
    raise ImportError(
        "mmarray.dask needs dask[array] (and distributed for a cluster): pip install mmarray[dask]"
    ) from e

from ._io import from_array, from_file, from_files
from ._paths import path_map, resolve
from ._refs import BlockRef, FileRef
from ._stats import median, nanmedian, nanpercentile, nanquantile, percentile, quantile
from ._write import FileTarget, file_target, to_file

__all__ = [
    "BlockRef",
    "FileRef",
    "FileTarget",
    "file_target",
    "from_array",
    "from_file",
    "from_files",
    "median",
    "nanmedian",
    "nanpercentile",
    "nanquantile",
    "path_map",
    "percentile",
    "quantile",
    "resolve",
    "to_file",
]
