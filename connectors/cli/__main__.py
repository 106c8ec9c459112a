"""`python -m connectors.cli`: the `dora` command without the installed script."""

import sys

from connectors.cli import main

sys.exit(main())
