"""`python -m dff ...` (what torchrun launches) is the same as `dff ...`."""

import sys

from dff.cli.main import main

sys.exit(main())
