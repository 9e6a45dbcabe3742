"""The datasets, one registration each (`tnbench.data.DATASETS` imports every module here)."""
