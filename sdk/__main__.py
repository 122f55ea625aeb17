"""``python -m edgemm``: the same as the ``edgemm`` command."""

import sys

from edgemm.cli import main

sys.exit(main())
