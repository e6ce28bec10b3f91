#!/usr/bin/env python
"""Write the synthetic MS cohort: same as ``mslesion synth``."""

import sys

from mslesion.cli import main

if __name__ == "__main__":
    sys.exit(main(["synth", *sys.argv[1:]]))
