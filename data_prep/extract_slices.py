#!/usr/bin/env python
"""Extract normalised slices from NIfTI/TIFF volumes: same as ``mslesion prep``."""

import sys

from mslesion.cli import main

if __name__ == "__main__":
    sys.exit(main(["prep", *sys.argv[1:]]))
