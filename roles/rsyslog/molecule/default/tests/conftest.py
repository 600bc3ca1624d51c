"""Make the shared helpers importable as `hpdtest` from every test module."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[5] / "molecule" / "shared"))
