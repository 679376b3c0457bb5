"""``python -m pipeline.cli``: the same as ``vqgen``."""

import sys

from . import main

sys.exit(main())
