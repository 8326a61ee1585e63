"""`python -m autolog ...` runs the `autolog` command (autolog/cli.py)."""

import sys

from autolog.cli import main

sys.exit(main())
