"""``python -m bench SCENARIO [options]``; see ``bench.cli`` (and ``bench.light`` for ``light``)."""

import sys

if sys.argv[1:2] == ["light"]:
    from bench.light import main as light_main

    sys.exit(light_main(sys.argv[2:]))

from bench.cli import main

sys.exit(main())
