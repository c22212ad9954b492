"""Make the test helpers (tests/node_models.py) importable."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
