"""The drill scripts are plain files in drills/, not a package: put their folder on
sys.path, as running `python drills/drill_report.py` does."""

from __future__ import annotations

import sys
from pathlib import Path

DRILLS = Path(__file__).resolve().parents[1]
if str(DRILLS) not in sys.path:
    sys.path.insert(0, str(DRILLS))
