"""docs/notebooks/tour.ipynb, executed on a real Jupyter kernel (nbclient, ipykernel).

The kernel is this virtual environment's Python, from a kernel spec written into a
temporary directory (``JUPYTER_PATH``), so that no kernel registered on the machine
is used instead. The notebook runs twice: with ipywidgets (the progress bar is
tqdm's widget) and with ipywidgets hidden from the kernel (tqdm's text bar). Each
run must give no error output and no warning on stderr, draw the residency picture
as HTML, and print the median numpy gives for the same data.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import mmarray

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
kernelspec = pytest.importorskip("ipykernel.kernelspec")
manager = pytest.importorskip("jupyter_client.manager")

TOUR = Path(__file__).resolve().parent.parent / "docs" / "notebooks" / "tour.ipynb"
WIDGET = "application/vnd.jupyter.widget-view+json"
KERNEL = "mmarray-tour"

# What the notebook builds, made again here: numpy's median of it is the oracle.
DATA = np.random.default_rng(2024).integers(0, 256, (4096, 4096), dtype=np.uint8)


def eviction_observable(d: Path) -> bool:
    """Whether evict really drops pages in d (not so on tmpfs)."""
    a = mmarray.create(d / "probe.raw", 16 * mmarray.PAGESIZE, "u1", fill=1)
    mmarray.region(a).flush()
    del a
    mmarray.evict(d / "probe.raw")
    b = mmarray.open(d / "probe.raw", dtype="u1")
    gone = mmarray.residency(b).resident == 0
    del b
    os.unlink(d / "probe.raw")
    return gone


def run_tour(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, widgets: bool):
    """The notebook, executed on a fresh kernel of this Python; returns its cells."""
    if not eviction_observable(tmp_path):
        pytest.skip("this file system keeps evicted pages in memory (tmpfs?)")
    env = {"TMPDIR": str(tmp_path)}  # the notebook's tempfile.mkdtemp() lands here
    if not widgets:  # a module that fails to import stands in for a missing ipywidgets
        hide = tmp_path / "hide"
        hide.mkdir()
        (hide / "ipywidgets.py").write_text("raise ImportError('hidden by the test')\n")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hide), os.environ.get("PYTHONPATH")]))
    spec = kernelspec.get_kernel_dict()
    spec["argv"][0] = sys.executable
    spec["env"] = env
    kernels = tmp_path / "jupyter" / "kernels" / KERNEL
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))  # no user start-up files
    nb = nbformat.read(TOUR, as_version=4)
    # local sockets (ipc) in the temporary runtime directory rather than TCP ports
    km = manager.KernelManager(kernel_name=KERNEL, transport="ipc")
    client = nbclient.NotebookClient(nb, km=km, timeout=120, startup_timeout=120, resources={})
    try:
        client.execute()
    finally:
        if km.has_kernel:
            km.shutdown_kernel()  # nbclient leaves a kernel manager it was given running
    assert not any(tmp_path.glob("mmarray-tour-*")), "the notebook removes its directory"
    return nb.cells


def outputs(cells, kind: str) -> list[dict]:
    return [o for c in cells if c.cell_type == "code" for o in c.outputs if o.output_type == kind]


def check_tour(cells) -> list[dict]:
    """What both runs must show; returns the display outputs."""
    assert outputs(cells, "error") == []
    streams = outputs(cells, "stream")
    err = "".join(o.text for o in streams if o.name == "stderr")
    assert "Warning" not in err and "IProgress" not in err, err
    out = "".join(o.text for o in streams if o.name == "stdout")
    printed = re.search(r"median: np\.float64\(([^)]*)\)", out)
    assert printed is not None, out
    assert float(printed.group(1)) == np.median(DATA)
    assert f"row sums written by the workers: {DATA.sum(axis=1)[:4]}" in out
    shown = outputs(cells, "execute_result") + outputs(cells, "display_data")
    pictures = [o for o in shown if "text/html" in o.data and "Residency" in o.data["text/plain"]]
    assert len(pictures) == 4  # before evict, after it, a quarter prefetched, all of it
    fractions = [
        float(re.search(r"\(([\d.]+)%\)", o.data["text/plain"]).group(1)) for o in pictures
    ]
    # the quarter prefetched with read-ahead off (the kernel may still read a little more)
    assert fractions[:2] == [100.0, 0.0] and 25.0 <= fractions[2] < 100.0 and fractions[3] == 100.0
    return shown


@pytest.mark.slow
def test_tour_with_ipywidgets_draws_the_widget(tmp_path, monkeypatch):
    pytest.importorskip("ipywidgets")
    pytest.importorskip("tqdm")
    shown = check_tour(run_tour(tmp_path, monkeypatch, widgets=True))
    assert any(WIDGET in o.data for o in shown), "no progress widget"


@pytest.mark.slow
def test_tour_without_ipywidgets_draws_text(tmp_path, monkeypatch):
    pytest.importorskip("tqdm")
    cells = run_tour(tmp_path, monkeypatch, widgets=False)
    shown = check_tour(cells)
    assert not any(WIDGET in o.data for o in shown)
    err = "".join(o.text for o in outputs(cells, "stream") if o.name == "stderr")
    assert "mmarray: 100%|" in err  # tqdm's text bar
