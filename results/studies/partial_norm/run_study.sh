#!/bin/sh
# LeNet-5 / Fashion-MNIST: tensorized layers trained from a fresh init (partial norms, log-domain,
# plain Gaussian) vs from the TT-SVD of the pretrained weights. Pretraining comes from the shared cache.
cd "$(dirname "$0")/../../.."
# one intra-op thread: on a shared 2-core machine more threads only spin against each other
export OMP_NUM_THREADS=1
run() {
  name=$1; shift
  .venv/bin/python -m tnbench model=lenet5 dataset=fashion_mnist pipeline.retrain_epochs=3 logger=csv \
    trainer.progress=false paths.results_dir=results/studies/partial_norm paths.cache_dir=results/cache \
    hydra.run.dir=results/studies/partial_norm/runs/$name "$@"
}
for spec in "$@"; do
  case $spec in
    mpo_partial_norm) run $spec method=mpo method.init=partial_norm ;;
    mpo_gaussian) run $spec method=mpo method.init=gaussian ;;
    mpo_log_norm) run $spec method=mpo method.init=log_norm ;;
    mpo_partial_norm_mean1) run $spec method=mpo method.init=partial_norm method.init_mean=1 ;;
    mpo_gaussian_mean1) run $spec method=mpo method.init=gaussian method.init_mean=1 ;;
    mpo_decompose) run $spec method=mpo method.init=decompose ;;
    tt_partial_norm) run $spec method=tt method.init=partial_norm ;;
    tt_gaussian) run $spec method=tt method.init=gaussian ;;
    peps_partial_norm) run $spec method=peps method.init=partial_norm ;;
  esac
done
