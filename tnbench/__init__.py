"""tnbench: compress neural networks with tensor networks and compare papers on equal terms."""

__version__ = "0.1.0"
