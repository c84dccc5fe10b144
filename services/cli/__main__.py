"""``python -m services.cli``: the ``ordermesh`` command."""

import sys

from services.cli import main

sys.exit(main())
