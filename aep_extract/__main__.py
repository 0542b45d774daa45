"""``python -m aep_extract``: the ``aep-extract`` command."""

import sys

from .cli import main

sys.exit(main())
