"""Run the fuzz: ``python tests/fuzz`` (or ``python -m fuzz`` in tests/); see __init__.py."""

import sys
from pathlib import Path

if __name__ == "__main__":
    if not __package__:  # run as a directory: import the package from tests/, not from here
        sys.path[0] = str(Path(__file__).resolve().parent.parent)
        from fuzz.runner import main
    else:
        from .runner import main
    sys.exit(main())
