"""``python -m greenai``: the same command line as ``greenai``."""

import sys

from greenai.cli import main

sys.exit(main())
