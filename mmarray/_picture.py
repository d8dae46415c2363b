"""How residency looks: the Residency result, its one-line repr and its picture in Jupyter.

The page map comes from the syscalls in :mod:`mmarray._cache`; this module only
presents it: the repr in a terminal, an SVG strip coloured by residency in
Jupyter (``_repr_html_``), and the HTML of a :class:`Region`
(:func:`region_html`). Byte sizes are written for people by :func:`format_bytes`.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from ._cache import resident_map
from ._core import PAGESIZE, Region

__all__ = ["Residency", "format_bytes", "region_html", "residency"]


def format_bytes(n: int) -> str:
    """``n`` bytes for people: ``'512 B'``, ``'1.5 KiB'``, ... up to TiB.

    >>> format_bytes(1023), format_bytes(3 << 29)
    ('1023 B', '1.5 GiB')
    """
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(n)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover - the loop always returns


def _shade(f: float) -> str:
    """Grey (nothing resident) to blue (all resident)."""
    g, b = (0xDD, 0xDD, 0xDD), (0x2A, 0x7A, 0xB0)
    return "#" + "".join(f"{round(x + (y - x) * f):02x}" for x, y in zip(g, b, strict=True))


class Residency:
    """Which pages under an array are in memory, from ``mincore``.

    Attributes
    ----------
    map : numpy.ndarray of bool
        One entry per page under the array, in address order: True when the
        page is resident (in the page cache, for file-backed memory).
    page_size : int
    pages, resident : int
        Number of pages, number of resident pages.
    fraction : float
        ``resident / pages`` (1.0 for an empty array: nothing left to load).

    In a terminal the repr is one line; in Jupyter the result renders as a
    strip coloured by residency (``_repr_html_``).
    """

    __slots__ = ("map", "page_size")

    def __init__(self, map: np.ndarray[Any, Any], page_size: int = PAGESIZE) -> None:  # noqa: A002
        self.map = np.asarray(map, dtype=bool)
        self.page_size = int(page_size)

    @property
    def pages(self) -> int:
        return int(self.map.size)

    @property
    def resident(self) -> int:
        return int(np.count_nonzero(self.map))

    @property
    def fraction(self) -> float:
        return self.resident / self.pages if self.pages else 1.0

    def __repr__(self) -> str:
        return (
            f"<Residency {self.resident}/{self.pages} pages resident ({self.fraction:.1%}): "
            f"{format_bytes(self.resident * self.page_size)} of "
            f"{format_bytes(self.pages * self.page_size)}>"
        )

    def _strip(self, width: int = 480, height: int = 14, cells: int = 240) -> str:
        """An inline SVG: the map in at most ``cells`` bins, runs of equal colour merged."""
        n = self.pages
        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'role="img" aria-label="resident pages">'
        ]
        if n:
            k = min(n, cells)
            edges = np.linspace(0, n, k + 1).astype(np.int64)
            frac = np.add.reduceat(self.map.astype(np.float64), edges[:-1]) / np.diff(edges)
            colours = [_shade(float(f)) for f in frac]
            w = width / k
            i = 0
            while i < k:
                j = i
                while j + 1 < k and colours[j + 1] == colours[i]:
                    j += 1
                parts.append(
                    f'<rect x="{i * w:.2f}" y="0" width="{(j - i + 1) * w + 0.05:.2f}" '
                    f'height="{height}" fill="{colours[i]}"/>'
                )
                i = j + 1
        else:
            parts.append(f'<rect width="{width}" height="{height}" fill="#f4f4f4"/>')
        parts.append("</svg>")
        return "".join(parts)

    def _repr_html_(self) -> str:
        text = html.escape(repr(self))
        return (
            f'<div class="mmarray-residency">{self._strip()}'
            f'<div style="font-family:monospace;font-size:11px">{text}</div></div>'
        )


def residency(a: np.ndarray[Any, Any] | Region) -> Residency:
    """Report which pages under ``a`` (any view, or a Region) are in memory.

    Examples
    --------
    >>> import mmarray, tempfile, os
    >>> a = mmarray.create(os.path.join(tempfile.mkdtemp(), "r.raw"), 8 * 4096, "u1", fill=1)
    >>> r = mmarray.residency(a[:4096])
    >>> r.pages, r.map.dtype
    (1, dtype('bool'))
    >>> os.unlink(mmarray.region(a).name)
    """
    return Residency(resident_map(a), PAGESIZE)


def region_html(reg: Region) -> str:
    """HTML for a Region in Jupyter: its description and its resident-page strip.

    Meant for ``Region._repr_html_``; a closed region shows its repr only.
    """
    text = html.escape(repr(reg))
    if reg.closed or not reg.mapped:
        return f"<code>{text}</code>"
    return f"<div><code>{text}</code>{residency(reg)._repr_html_()}</div>"
