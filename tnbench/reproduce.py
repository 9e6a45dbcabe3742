"""`python -m tnbench.reproduce PAPER`: a paper's published numbers beside measured ones (tnbench.studies.reproduce)."""
import sys

from tnbench.studies.reproduce import main

if __name__ == "__main__":
    sys.exit(main())
