"""Make the repository's packages importable: they are not installed into the venv.

(``pythonpath = ["."]`` under ``[tool.pytest.ini_options]`` would do the same and
could replace this file.)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
