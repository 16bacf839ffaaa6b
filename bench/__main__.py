"""``python -m bench SCENARIO [options]``; see ``bench.cli``."""

import sys

from bench.cli import main

sys.exit(main())
