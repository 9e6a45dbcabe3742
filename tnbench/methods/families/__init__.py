"""Code shared by a family of methods (not methods themselves): the rank-adaptive methods and
their integrator, the tensorized (TT/MPO/PEPS) methods, the brick-wall (ADTN/ADQC) methods."""
