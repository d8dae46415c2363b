"""Every private name of mmarray that the fuzz uses, in one place.

Where mmarray moves one of these, fix it here: no other module of the fuzz reaches
into mmarray's private modules or attributes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import mmarray
from mmarray import _core
from mmarray._cache import ADVICE

__all__ = ["ADVICE", "REF_FIELDS", "core_ndarray", "ref_fields", "region_html"]

#: the fields of an ArrayRef, in the order its constructor takes them
REF_FIELDS: list[str] = list(mmarray.ArrayRef.__slots__)


def core_ndarray(region: mmarray.Region, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
    """An array over a Region's memory, made by the C core (``_core.ndarray``)."""
    return _core.ndarray(region, dtype, shape)


def ref_fields(ref: mmarray.ArrayRef) -> tuple[Any, ...]:
    """An ArrayRef's fields, in the order of ``ArrayRef.__slots__`` (``ref._fields()``)."""
    return ref._fields()


def region_html(region: mmarray.Region) -> Any:
    """A Region's notebook view (``Region._repr_html_``, IPython's protocol)."""
    return region._repr_html_()
