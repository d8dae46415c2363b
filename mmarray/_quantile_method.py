"""numpy's quantile-method arithmetic, restated: virtual indexes, ranks and interpolation.

The 13 ``method=`` values of `numpy.quantile` (``numpy/lib/_function_base_impl.py``):
for a lane of ``n`` values, which ranks (0-based positions in sorted order) a
quantile needs, and how numpy combines the values found there. Nothing here knows
about mmarray or its C core: `Plan` takes the values at its ranks from the caller,
however they were found.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

__all__ = ["METHODS", "Plan", "Request", "as_array", "lerp"]


class Request(NamedTuple):
    """One call's quantiles: numpy's function name, q as given and as fractions
    (None where q is not a number: numpy's to judge), the method and the weights."""

    name: str
    q: Any
    fractions: np.ndarray | None
    method: str
    weights: Any


def _gamma_mask(shape: Any, default: Any, conditioned: Any, where: Any) -> np.ndarray:
    out = np.full(shape, default)
    np.copyto(out, conditioned, where=where, casting="unsafe")
    return out


def _to_boundaries(index: Any, cond: Callable[[Any, Any], Any]) -> np.ndarray:
    lower = np.floor(index)
    upper = lower + 1
    gamma = index - lower
    res = _gamma_mask(index.shape, upper, lower, cond(gamma, index)).astype(np.intp)
    res[res < 0] = 0
    return res


def _hf_index(n: int, q: Any, alpha: float, beta: float) -> Any:
    return n * q + (alpha + q * (1 - alpha - beta)) - 1


def _vi_inverted_cdf(n: int, q: Any) -> Any:
    return _to_boundaries(n * q - 1, lambda g, _: g == 0)


def _vi_closest(n: int, q: Any) -> Any:
    return _to_boundaries(n * q - 1 - 0.5, lambda g, i: (g == 0) & (np.floor(i) % 2 == 1))


def _vi_midpoint(n: int, q: Any) -> Any:
    return 0.5 * (np.floor((n - 1) * q) + np.ceil((n - 1) * q))


# method -> (virtual index, gamma fix or None for the discrete methods)
METHODS: dict[str, tuple[Callable[[int, Any], Any], Callable[[Any, Any], Any] | None]] = {
    "inverted_cdf": (_vi_inverted_cdf, None),
    "averaged_inverted_cdf": (
        lambda n, q: n * q - 1,
        lambda g, _: _gamma_mask(g.shape, 1.0, 0.5, g == 0),
    ),
    "closest_observation": (_vi_closest, None),
    "interpolated_inverted_cdf": (lambda n, q: _hf_index(n, q, 0, 1), lambda g, _: g),
    "hazen": (lambda n, q: _hf_index(n, q, 0.5, 0.5), lambda g, _: g),
    "weibull": (lambda n, q: _hf_index(n, q, 0, 0), lambda g, _: g),
    "linear": (lambda n, q: (n - 1) * q, lambda g, _: g),
    "median_unbiased": (lambda n, q: _hf_index(n, q, 1 / 3.0, 1 / 3.0), lambda g, _: g),
    "normal_unbiased": (lambda n, q: _hf_index(n, q, 3 / 8.0, 3 / 8.0), lambda g, _: g),
    "lower": (lambda n, q: np.floor((n - 1) * q).astype(np.intp), None),
    "higher": (lambda n, q: np.ceil((n - 1) * q).astype(np.intp), None),
    "midpoint": (_vi_midpoint, lambda g, i: _gamma_mask(g.shape, 0.5, 0.0, i % 1 == 0)),
    "nearest": (lambda n, q: np.around((n - 1) * q).astype(np.intp), None),
}


def as_array(x: Any) -> np.ndarray:
    """x itself if it is an ndarray, else ``np.asarray(x)`` (numpy's ``_as_array``)."""
    return x if isinstance(x, np.ndarray) else np.asarray(x)


class Plan:
    """The ranks one lane length needs for a quantile, and how to combine them.

    Parameters
    ----------
    n : int
        The lane length (values not NaN, for the nan* functions).
    q : ndarray
        The quantiles, as fractions.
    method : str
        One of `METHODS`.
    inexact : bool
        Whether the values are floats: rank ``n - 1`` (the largest, NaN if any
        value is) is selected too, for numpy's NaN propagation.

    Examples
    --------
    >>> plan = Plan(5, np.array([0.25, 0.5]), "linear", False)
    >>> plan.ranks.tolist()
    [1, 2, 3]
    >>> plan.finish(np.array([20.0, 30.0, 40.0]), None, False, False).tolist()
    [20.0, 30.0]
    """

    def __init__(self, n: int, q: np.ndarray, method: str, inexact: bool) -> None:
        get_index, fix_gamma = METHODS[method]
        vi = np.asanyarray(get_index(n, q))
        self.n, self.vi, self.fix_gamma = n, vi, fix_gamma
        if fix_gamma is None:
            self.take = True
        else:
            self.take = method == "linear" and np.issubdtype(vi.dtype, np.integer)
        extra = [n - 1] if inexact else []
        if self.take:
            idx = vi
            need = [np.ravel(idx)]
        else:
            lower = np.array(np.floor(vi), copy=True)
            upper = np.array(np.add(lower, 1), copy=True)
            above = vi >= n - 1
            if np.any(above):
                lower[above] = -1
                upper[above] = -1
            below = vi < 0
            if np.any(below):
                lower[below] = 0
                upper[below] = 0
            if inexact:
                nans = np.isnan(vi)
                if np.any(nans):
                    lower[nans] = -1
                    upper[nans] = -1
            self.lower = lower.astype(np.intp)
            self.upper = upper.astype(np.intp)
            need = [np.ravel(self.lower), np.ravel(self.upper)]
        ranks = np.concatenate([np.asarray(x, dtype=np.int64) for x in need] + [extra])
        ranks = np.where(ranks < 0, ranks + n, ranks).astype(np.int64)
        self.ranks = np.unique(ranks)

    def pos(self, idx: Any) -> Any:
        """Rows of the selected values that hold numpy's indexes idx."""
        idx = np.where(np.asarray(idx) < 0, np.asarray(idx) + self.n, idx)
        return np.searchsorted(self.ranks, idx)

    def int_overflow(self, P: np.ndarray) -> bool:
        """Whether numpy's ``b - a`` of two integer scalars would overflow in some lane."""
        if self.take or P.dtype.kind not in "iu":
            return False
        a, b = P[self.pos(self.lower)], P[self.pos(self.upper)]
        if P.dtype.kind == "u":
            return bool(np.any(b < a))
        r = np.subtract(b, a)
        return bool(np.any(((b ^ a) & (b ^ r)) < 0))

    def finish(self, P: np.ndarray, out: np.ndarray | None, weak_q: bool, inexact: bool) -> Any:
        """numpy's quantile from the selected values P (one row per rank of self.ranks)."""
        if self.take:
            index = self.vi
            p = self.pos(index)
            if np.ndim(index) == 0:
                p = np.intp(p)
            result = np.take(P, p, axis=0, out=out)
            nans: Any = np.isnan(P[-1]) if inexact else np.array(False, dtype=bool)
        else:
            plo, phi = self.pos(self.lower), self.pos(self.upper)
            if np.ndim(self.lower) == 0:
                plo, phi = np.intp(plo), np.intp(phi)
            previous = P[plo]
            following = P[phi]
            gamma = np.asanyarray(self.vi - self.lower)
            assert self.fix_gamma is not None
            gamma = self.fix_gamma(gamma, self.vi)
            gamma = np.asanyarray(gamma, dtype=self.vi.dtype)
            if weak_q:
                gamma = float(gamma)
            else:
                gamma = gamma.reshape(self.vi.shape + (1,) * (P.ndim - 1))
            result = lerp(previous, following, gamma, out=out)
            nans = np.isnan(P[-1]) if inexact else None
        if np.any(nans):
            if result.ndim == 0 and out is None:
                result = P[-1]
            else:
                np.copyto(result, P[-1, ...], where=nans)
        return result


def lerp(a: Any, b: Any, t: Any, out: np.ndarray | None = None) -> Any:
    """numpy's ``_lerp``: ``a + (b - a) * t``, computed from b's side where t >= 0.5."""
    diff = b - a
    if out is None:
        res = as_array(np.add(a, diff * t))
    else:
        res = np.add(a, diff * t, out=out)
    np.subtract(b, diff * (1 - t), out=res, where=t >= 0.5, casting="unsafe", dtype=type(res.dtype))
    if res.ndim == 0 and out is None:
        res = res[()]
    return res
