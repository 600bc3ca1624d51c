"""The load-test scripts are plain files in loadtest/, not a package: put their folder on
sys.path, as running `python loadtest/report.py` does."""

from __future__ import annotations

import sys
from pathlib import Path

LOADTEST = Path(__file__).resolve().parents[1]
if str(LOADTEST) not in sys.path:
    sys.path.insert(0, str(LOADTEST))
