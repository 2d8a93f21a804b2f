"""`python -m pspnet …`: the `pspnet` command, for environments without the console script on PATH."""

import sys

from pspnet.cli.main import main

sys.exit(main())
