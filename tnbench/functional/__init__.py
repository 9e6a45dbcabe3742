"""Pure math: functions of tensors, no nn.Module and no state. Each is tested against a dense
reconstruction. Layers (tnbench.layers) own parameters and call these; methods
(tnbench.methods) decide what to factorize and report.

  approximation  norm loss (both forms), relative error, correlation loss, ranks for a target
  lowrank        matrix SVD truncation (square-root split), matricized convs
  bipartition    the seven cuts of a conv kernel, their conv chains
  tucker         mode products, HOSVD, the rank-adaptive integrator's basis algebra
  cp             CP kernels, the four-conv chain, ALS through tensorly
  conv           convolution helpers shared by the factorized forwards
  network        tensor networks by leg labels, contraction through opt_einsum
  tt, peps       tensor trains / TT-matrices and PEPS grids
  factorize      splitting a dimension into factors
  partial_norm   finite initialization by partial norms, and the log-domain normalizer
  brickwall      brick-wall circuits (ADTN / ADQC weight generation)
  fitting        gradient fits of a network to given weights (ADTN stage 1, PEPS)
  counting       counting rules: kept weights and compression rate, ours and the DLRT table's
"""
