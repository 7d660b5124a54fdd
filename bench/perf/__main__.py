"""``python -m bench.perf``."""

import sys

from bench.perf.cli import main

sys.exit(main())
