"""How residency looks: the Residency repr, its SVG strip and a Region's HTML in Jupyter."""

from __future__ import annotations

from xml.etree import ElementTree

import numpy as np
from page_helpers import private_anon

import mmarray
from mmarray import _picture

P = mmarray.PAGESIZE


# ---- residency and Region pictures -----------------------------------------------------------


def test_residency_repr_and_html():
    a = private_anon(10)
    a[: 3 * P] = 1
    r = mmarray.residency(a)
    text = repr(r)
    assert "\n" not in text and "3/10 pages" in text and "30.0%" in text
    h = r._repr_html_()
    assert h.count("<svg") == 1 and "<rect" in h and "3/10 pages" in h
    root = ElementTree.fromstring(h)  # well-formed markup
    rects = root.findall(".//{http://www.w3.org/2000/svg}rect")
    widths = sum(float(r.get("width")) for r in rects)
    assert len(rects) == 2 and abs(widths - 480) < 1  # two runs cover the strip
    big = mmarray.Residency(np.arange(10000) % 3 == 0)
    assert big._repr_html_().count("<rect") <= 240
    empty = mmarray.residency(a[:0])
    assert (empty.pages, empty.fraction) == (0, 1.0)
    assert "<svg" in empty._repr_html_()
    reg = mmarray.region(a)
    assert "<svg" in _picture.region_html(reg)


def test_region_renders_as_html_in_jupyter(tmp_path):
    a = mmarray.create(tmp_path / "h.raw", 4 * P, "u1")
    reg = mmarray.region(a)
    a[:P] = 1  # touch the first page
    html_text = reg._repr_html_()
    assert html_text.startswith("<div><code>&lt;mmarray.Region open") and "<svg" in html_text
    del a
    reg.close()
    assert reg._repr_html_().startswith("<code>") and "closed" in reg._repr_html_()
