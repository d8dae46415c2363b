"""The shape, dtype and order arguments of the constructors, checked and normalised.

Shared by every function that builds an array from a description (``open``,
``create``, ``anonymous``, ``named``, ``ArrayRef.open``), so they accept and refuse
the same things with the same messages.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

__all__ = ["checked_dtype", "expand_subarray", "order_is_fortran", "shape_tuple"]


def shape_tuple(shape: Any) -> tuple[int, ...]:
    """Normalise an int or a sequence of ints into a tuple, rejecting negatives;
    anything else is a TypeError that says what a shape must be."""
    if isinstance(shape, int):
        shape = (shape,)
    else:
        try:
            shape = (operator.index(shape),)
        except TypeError:
            try:
                shape = tuple(operator.index(n) for n in shape)
            except TypeError:
                raise TypeError(
                    f"shape must be an int or a tuple of ints, not {shape!r} "
                    f"({type(shape).__name__})"
                ) from None
    for n in shape:
        if n < 0:
            raise ValueError(f"negative dimension {n} in shape {shape}")
    return shape


def order_is_fortran(order: str) -> bool:
    """True for ``'F'``, False for ``'C'``; anything else raises ``ValueError``."""
    if order == "C":
        return False
    if order == "F":
        return True
    raise ValueError(f"order must be 'C' or 'F', not {order!r}")


def checked_dtype(dtype: DTypeLike) -> np.dtype[Any]:
    """The dtype ``dtype`` names, refusing dtypes that hold Python objects."""
    dt = dtype if isinstance(dtype, np.dtype) else np.dtype(dtype)
    if dt.hasobject:
        raise TypeError(f"cannot map arrays of Python objects (dtype {dt})")
    return dt


def expand_subarray(
    shape: tuple[int, ...], dt: np.dtype[Any]
) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """A subarray dtype such as ``('u2', (3,))`` adds its dimensions to the shape, as
    in numpy's arrays; a ``.npy`` header can only describe the expanded array."""
    if dt.subdtype is None:
        return shape, dt
    base, sub = dt.subdtype
    return shape + tuple(sub), base
