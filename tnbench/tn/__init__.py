"""Tensor-network math as small pure functions: network structure and contraction
(`network`), dimension factorization (`factorize`), tensor trains and TT-matrices (`tt`),
PEPS grids (`peps`) and finite initialization by partial norms (`partial_norm`)."""
