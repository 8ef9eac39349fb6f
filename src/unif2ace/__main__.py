"""``python -m unif2ace`` = the ``unif2ace`` command."""

import sys

from unif2ace.cli.main import main

sys.exit(main())
