"""``python -m bench SCENARIO [options]``; see ``bench.cli`` (``bench.light`` for ``light``, ``bench.search`` for ``search``)."""

import sys

if sys.argv[1:2] == ["light"]:
    from bench.light import main as light_main

    sys.exit(light_main(sys.argv[2:]))

if sys.argv[1:2] == ["search"]:
    from bench.search import main as search_main

    sys.exit(search_main(sys.argv[2:]))

from bench.cli import main

sys.exit(main())
