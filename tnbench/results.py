"""`python -m tnbench.results [DIR]`: every run record under DIR as one table (tnbench.reporting.table)."""
import sys

from tnbench.reporting.table import main

if __name__ == "__main__":
    sys.exit(main())
