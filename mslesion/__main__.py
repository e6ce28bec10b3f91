import sys

from mslesion.cli import main

sys.exit(main())
