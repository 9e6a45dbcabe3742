"""`python -m tnbench.report`: the comparison report (tnbench.reporting.comparison)."""
import sys

from tnbench.reporting.comparison import main

if __name__ == "__main__":
    sys.exit(main())
