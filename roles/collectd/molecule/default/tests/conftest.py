"""Make the project's shared test helpers (molecule/shared/hpdtest.py) importable."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[5] / "molecule" / "shared"))
