"""``python -m unixipc``: the ``unixipc`` command."""

import sys

from .cli.main import main

sys.exit(main())
