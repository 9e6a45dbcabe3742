"""`python -m tnbench.dashboard`: the W&B workspace of the project (tnbench.reporting.dashboard)."""
import sys

from tnbench.reporting.dashboard import main

if __name__ == "__main__":
    sys.exit(main())
