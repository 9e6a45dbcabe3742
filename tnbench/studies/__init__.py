"""Studies: experiments made of many evaluations of one pretrained model (a paper's figure),
run as `python -m tnbench.studies.<name>`; each writes tidy CSV tables and plots."""
