"""``python -m femurseg.cli`` (as torchrun starts it): the same as the ``femurseg`` command."""

import sys

from femurseg.cli import main

sys.exit(main())
