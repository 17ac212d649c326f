"""`python -m tembo`: the `tembo` command, for a shell where the virtual environment's scripts are not on PATH."""

import sys

from tembo.cli import main

sys.exit(main())
