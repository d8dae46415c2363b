"""mmarray._import_hook.when_imported: registrations that wait for a module's import."""

from __future__ import annotations

import sys

import pytest

from mmarray._import_hook import when_imported


@pytest.fixture
def module_dir(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [n for n in sys.modules if n.startswith("mm_hook_")]:
        del sys.modules[name]


def test_runs_after_the_import_and_not_before(module_dir):
    (module_dir / "mm_hook_a.py").write_text("VALUE = 1\n")
    seen = []
    when_imported("mm_hook_a", lambda m: seen.append(m.VALUE))
    assert seen == [] and "mm_hook_a" not in sys.modules
    import mm_hook_a  # noqa: F401

    assert seen == [1]
    when_imported("mm_hook_a", lambda m: seen.append(m.VALUE + 1))  # loaded: at once
    assert seen == [1, 2]


def test_a_failed_import_keeps_the_callback_for_the_next(module_dir):
    path = module_dir / "mm_hook_b.py"
    path.write_text("raise ImportError('not yet')\n")
    seen = []
    when_imported("mm_hook_b", lambda m: seen.append(m.__name__))
    with pytest.raises(ImportError, match="not yet"):
        import mm_hook_b  # noqa: F401
    assert seen == []
    path.write_text("VALUE = 2\n")
    sys.modules.pop("mm_hook_b", None)
    import importlib

    importlib.invalidate_caches()
    import mm_hook_b  # noqa: F401, F811

    assert seen == ["mm_hook_b"]


def test_a_failing_callback_warns_and_the_import_succeeds(module_dir):
    (module_dir / "mm_hook_c.py").write_text("VALUE = 3\n")

    def broken(module):
        raise AttributeError("no register")

    when_imported("mm_hook_c", broken)
    with pytest.warns(RuntimeWarning, match="could not register itself with mm_hook_c"):
        import mm_hook_c
    assert mm_hook_c.VALUE == 3
