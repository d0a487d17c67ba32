"""`python -m mlsys_opt` runs the `mlsys-opt` command line (see mlsys_opt.cli)."""
import sys

from mlsys_opt.cli import main

sys.exit(main())
