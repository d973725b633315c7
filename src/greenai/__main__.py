"""``python -m greenai``: the same command line as ``greenai``."""

import sys

from greenai.cli.commands import main

sys.exit(main())
