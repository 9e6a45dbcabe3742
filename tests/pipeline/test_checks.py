"""The bad-input catalogue: every case goes through the command line's own entry point
(`tnbench.__main__.cli`, in this process: the same up-front check of every job as
`python -m tnbench`, tests/integration/test_cli.py runs a few as real subprocesses) and must
exit 2 with exactly one line on stderr naming the field and what it allows, before any work:
no run directory, no record, nothing already recorded changed, nothing written where the
command runs."""
from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import pytest
import torch

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
FC2 = ["model=fc2", "method.layers=all"]  # fc2 has two layers: all_but_first_last selects none
DLRT = ["method=dlrt", "model=lenet5_dlrt"]
ADTN = ["method=adtn", "model=fc2"]
SYN = ["dataset=synthetic"]


def case(*args: str, message: str, marks=()):
    return pytest.param(list(args), message, marks=marks, id=" ".join(args))


CATALOGUE = [
    # names of config group entries
    case("dataset=imagenet", message="dataset='imagenet' is not known; allowed: cifar10, cifar100, fashion_mnist, "
                                     "mnist, synthetic"),
    case("model=alexnet", message="model='alexnet' is not known; allowed: cnn4, fc2, lenet5"),
    case("method=prune", message="method='prune' is not known; allowed: adqc, adtn"),
    case("trainer=tpu", message="trainer='tpu' is not known; allowed: cpu, ddp, gpu"),
    case("logger=mlflow", message="logger='mlflow' is not known; allowed: csv, none, wandb"),
    case("experiment=nope", message="experiment='nope' is not known; allowed: adtn_fc2_mnist"),
    case("+sweep=nope", message="sweep='nope' is not known; allowed: adtn_vgg16"),
    case("-m", "hydra/launcher=nope", message="is not known; allowed: basic, joblib, submitit_local"),
    case("--bogus-flag", message="unrecognized arguments: --bogus-flag"),
    case("method=svd,tucker", message="method=svd,tucker gives several values: add -m (--multirun) to sweep over them"),
    # keys that no section has
    case("bogus=1", message="bogus is not an option; allowed: dataset, model, method, trainer"),
    case("dataset.bogus=1", message="dataset.bogus is not an option of dataset=fashion_mnist; allowed: name, data_dir"),
    case("model.bogus=1", message="model.bogus is not an option of model=lenet5; allowed: name, options"),
    case("method.bogus=1", message="method.bogus is not an option of method=svd; allowed: name, paper, layers, rank"),
    case("trainer.bogus=1", message="trainer.bogus is not an option of trainer; allowed: accelerator, devices"),
    case("pipeline.bogus=1", message="pipeline.bogus is not an option of pipeline; allowed: pretrain_epochs"),
    case("pipeline.retrain_optimizer.beta=1", message="pipeline.retrain_optimizer.beta is not an option of "
                                                      "pipeline.retrain_optimizer; allowed: name, lr, momentum"),
    case("dataset=mnist", "dataset.channels=3", message="dataset.channels is not an option of dataset=mnist"),
    case(*FC2, "model.options.width=3", message="model.options.width is not an option of model=fc2; allowed: hidden"),
    case("-m", "method=svd,tucker", "method.bogus=1,2", message="method.bogus is not an option of method=svd"),
    # types
    case("seed=abc", message="seed must be an integer, got 'abc'"),
    case("pipeline.pretrain_epochs=1.5", message="pipeline.pretrain_epochs must be an integer, got '1.5'"),
    case("pipeline.pretrain_optimizer.lr=fast", message="pipeline.pretrain_optimizer.lr must be a number, got 'fast'"),
    case("dataset.batch_size=abc", message="dataset.batch_size must be an integer, got 'abc'"),
    case(*SYN, "dataset.image_size=abc", message="dataset.image_size must be an integer, got 'abc'"),
    case("method.rank=abc", message="method.rank must be an integer, got 'abc'"),
    case("trainer.channels_last=maybe", message="trainer.channels_last must be true or false, got 'maybe'"),
    case("trainer.deterministic=sometimes", message="trainer.deterministic must be true or false, got 'sometimes'"),
    case("logger.tags=abc", message="logger.tags must be a list, e.g. logger.tags=[a,b]"),
    case("experiment_name=[a]", message="experiment_name must be a string, got a list"),
    # the seed
    case("seed=-1", message="seed must be in [0, 4294967294], got -1"),
    case("seed=4294967295", message="seed must be in [0, 4294967294], got 4294967295"),
    case("seed=99999999999999999999", message="seed must be in [0, 4294967294], got 99999999999999999999"),
    # the pipeline
    case("pipeline.pretrain_epochs=-1", message="pipeline.pretrain_epochs must be >= 0, got -1"),
    case("pipeline.retrain_epochs=-3", message="pipeline.retrain_epochs must be >= 0, got -3"),
    case("pipeline.recovery_tolerance=-1", message="pipeline.recovery_tolerance must be >= 0, got -1.0"),
    case("pipeline.select=best", message="pipeline.select must be one of last, best_val_loss; got 'best'"),
    case("pipeline.select=best_val_loss", message="pipeline.select=best_val_loss needs a validation split: set "
                                                  "dataset.val_split"),
    case("pipeline.init_checkpoint=/nonexistent.ckpt", message="pipeline.init_checkpoint=/nonexistent.ckpt is not "
                                                               "a file"),
    case("pipeline.init_checkpoint=''", message="pipeline.init_checkpoint must be null or the path of a checkpoint"),
    case("pipeline.pretrain_optimizer.name=lbfgs", message="pipeline.pretrain_optimizer.name must be one of sgd, "
                                                           "adam, adamw; got 'lbfgs'"),
    case("pipeline.pretrain_optimizer.lr=0", message="pipeline.pretrain_optimizer.lr must be > 0, got 0.0"),
    case("pipeline.pretrain_optimizer.lr=-1", message="pipeline.pretrain_optimizer.lr must be > 0, got -1.0"),
    case("pipeline.pretrain_optimizer.momentum=2", message="pipeline.pretrain_optimizer.momentum must be in [0, 1], "
                                                           "got 2.0"),
    case("pipeline.pretrain_optimizer.weight_decay=-1", message="pipeline.pretrain_optimizer.weight_decay must be "
                                                                ">= 0, got -1.0"),
    case("pipeline.pretrain_optimizer.schedule=linear", message="pipeline.pretrain_optimizer.schedule must be one of "
                                                                "cosine, constant, step; got 'linear'"),
    case("pipeline.pretrain_optimizer.step_size=0", message="pipeline.pretrain_optimizer.step_size must be >= 1, "
                                                            "got 0"),
    case("pipeline.pretrain_optimizer.gamma=0", message="pipeline.pretrain_optimizer.gamma must be in (0, 1], got 0.0"),
    case("pipeline.pretrain_optimizer.gamma=1.5", message="pipeline.pretrain_optimizer.gamma must be in (0, 1]"),
    case("pipeline.retrain_optimizer.lr=0", message="pipeline.retrain_optimizer.lr must be > 0, got 0.0"),
    case("pipeline.retrain_optimizer.momentum=-0.1", message="pipeline.retrain_optimizer.momentum must be in [0, 1]"),
    case("pipeline.retrain_optimizer.name=sgd2", message="pipeline.retrain_optimizer.name must be one of sgd, adam"),
    case("pipeline.retrain_optimizer.schedule=poly", message="pipeline.retrain_optimizer.schedule must be one of "
                                                             "cosine, constant, step; got 'poly'"),
    # the trainer and the machine
    case("trainer.num_threads=0", message="trainer.num_threads must be in [1, 1024] or null, got 0"),
    case("trainer.num_threads=100000", message="trainer.num_threads must be in [1, 1024] or null, got 100000"),
    case("trainer.num_threads=1000", message="trainer.num_threads must be null or between 1 and"),
    case("-m", "hydra/launcher=submitit_slurm", "trainer.num_threads=5000",
         message="trainer.num_threads must be in [1, 1024] or null, got 5000"),  # checked for a job that runs elsewhere
    case("trainer.num_nodes=0", message="trainer.num_nodes must be >= 1, got 0"),
    case("trainer.precision=8", message="trainer.precision must be one of 32-true, 32, bf16-mixed"),
    case("trainer.devices=0", message="trainer.devices must be an integer >= 1, -1 (all), auto or a non-empty list "
                                      "of device indices; got 0"),
    case("trainer.devices=-2", message="trainer.devices must be an integer >= 1, -1 (all), auto"),
    case("trainer.devices=[]", message="trainer.devices must be an integer >= 1, -1 (all), auto"),
    case("trainer.devices=[0,1]", message="Lightning cannot run trainer.accelerator=cpu, trainer.devices=[0, 1]"),
    case("trainer.limit_train_batches=0", message="trainer.limit_train_batches must be null (all), an integer >= 1 "
                                                  "(batches) or a float in (0, 1] (a fraction), got 0"),
    case("trainer.limit_train_batches=1.5", message="trainer.limit_train_batches must be null (all), an integer >= 1"),
    case("trainer.limit_train_batches=-1", message="trainer.limit_train_batches must be null (all), an integer >= 1"),
    case("trainer.limit_train_batches=0.0", message="trainer.limit_train_batches must be null (all)"),
    case("trainer.limit_val_batches=0", message="trainer.limit_val_batches must be null (all), an integer >= 1 "
                                                "(batches) or a float in (0, 1] (a fraction), got 0 (0 would measure "
                                                "no accuracy)"),
    case("trainer.limit_val_batches=2.0", message="trainer.limit_val_batches must be null (all), an integer >= 1"),
    case("trainer.gradient_clip_val=-1", message="trainer.gradient_clip_val must be >= 0 or null, got -1.0"),
    case("trainer=gpu", message="trainer.accelerator=gpu but this machine has no GPU that torch can use; allowed "
                                "here: cpu (trainer=cpu)", marks=NO_GPU),
    case("trainer=ddp", message="trainer.accelerator=gpu but this machine has no GPU", marks=NO_GPU),
    case("trainer.accelerator=cuda", message="trainer.accelerator=cuda but this machine has no GPU", marks=NO_GPU),
    case("trainer.accelerator=tpu", message="Lightning cannot run trainer.accelerator=tpu"),
    case("trainer.strategy=bogus", message="Lightning cannot run trainer.accelerator=cpu, trainer.devices=1, "
                                           "trainer.strategy=bogus"),
    # the logger
    case("logger.name=mlflow", message="logger.name must be one of wandb, csv, none; got 'mlflow'"),
    case("logger.mode=foo", message="logger.mode must be one of offline, online, disabled; got 'foo'"),
    # paths and run directories
    case("paths.data_dir=''", message="dataset.data_dir must name a directory (an empty one means the current "
                                      "directory), got ''"),
    case("dataset.data_dir=''", message="dataset.data_dir must name a directory"),
    case("paths.cache_dir=''", message="paths.cache_dir must name a directory"),
    case("run_id=../x", message="run_id='../x' must be a plain directory name (no '/', not '.' or '..')"),
    case("run_id=/tmp/x", message="run_id='/tmp/x' must be a plain directory name"),
    case("run_id=.", message="run_id='.' must be a plain directory name"),
    case("hydra.run.dir=/tmp/tnbench-outside", message="hydra.run.dir puts the run in /tmp/tnbench-outside, outside "
                                                       "paths.results_dir="),
    case("-m", "hydra.sweep.dir=/tmp/tnbench-outside", "method.rank=4,8",
         message="hydra.sweep.dir/hydra.sweep.subdir puts the run in /tmp/tnbench-outside/"),
    # the data: sizes that would leave nothing to train or test on
    case("dataset.batch_size=0", message="dataset.batch_size must be >= 1, got 0"),
    case("dataset.eval_batch_size=0", message="dataset.eval_batch_size must be >= 1, got 0"),
    case("dataset.train_subset=-5", message="dataset.train_subset must be >= 0 or null, got -5"),
    case("dataset.test_subset=-1", message="dataset.test_subset must be >= 0 or null, got -1"),
    case("dataset.val_split=-1", message="dataset.val_split must be >= 0 or null, got -1"),
    case("dataset.val_split=60000", message="dataset.val_split must be in [1, 59999] (training examples: 60000), "
                                            "got 60000"),
    case("dataset.train_subset=1000", "dataset.val_split=1000",
         message="dataset.val_split must be in [1, 999] (training examples: 1000), got 1000"),
    case(*SYN, "dataset.train_size=100", "dataset.val_split=200",
         message="dataset.val_split must be in [1, 99] (training examples: 100), got 200"),
    case(*SYN, "dataset.train_size=0", message="dataset.train_size must be >= 1, got 0"),
    case(*SYN, "dataset.test_size=0", message="dataset.test_size must be >= 1, got 0"),
    case(*SYN, "dataset.channels=0", message="dataset.channels must be >= 1, got 0"),
    case(*SYN, "dataset.num_classes=0", message="dataset.num_classes must be >= 2, got 0"),
    case(*SYN, "dataset.num_classes=1", message="dataset.num_classes must be >= 2, got 1"),
    case(*SYN, "dataset.image_size=0", message="dataset.image_size must be >= 1, got 0"),
    # the model against the data, built on the meta device
    case(*SYN, "dataset.image_size=4", message="lenet5: image_size must be >= 12 (its conv/pool trunk), got 4"),
    case(*SYN, "model=cnn4", "dataset.image_size=2", message="cnn4: image_size must be >= 4, got 2"),
    case(*FC2, "model.options.hidden=0", message="fc2: model.options.hidden must be >= 1, got 0"),
    # layers and ranks, against the model's real layers
    case("method.rank=0", message="method.rank must be >= 1 or null, got 0"),
    case("-m", "method=none,svd", "method.rank=4,0", message="method.rank must be >= 1 or null, got 0"),
    case("method.rank=100000", message="method.rank=100000 saves no parameters in any selected layer, so the run "
                                       "would compress nothing; ranks that save some: features.3 up to"),
    case("method.layers=[]", message="method.layers must be all, all_but_first_last or a non-empty list of layer "
                                     "names; got []"),
    case("method.layers=[conv9]", message="method.layers names unknown layer(s) conv9"),
    case("model=fc2", message="method.layers=all_but_first_last selects no layer of this model for method=svd, which "
                              "would compress nothing; allowed: all, all_but_first_last or names among classifier.0"),
    case("method.energy=2", message="method.energy must be in (0, 1] or null, got 2.0"),
    case("method.energy=0", message="method.energy must be in (0, 1] or null, got 0.0"),
    case("method.rank=null", message="method.rank or method.energy must be set (rank >= 1 or energy in (0, 1])"),
    case("method.energy=1.0", message="method.energy=1.0 keeps every singular value, so every layer stays dense and "
                                      "the run would compress nothing; allowed: an energy in (0, 1)"),
    # svd_truncation
    case("method=svd_truncation", "method.cut=diag", message="method.cut must be one of out, in, kh, kw, out_in, "
                                                             "out_kh, out_kw; got 'diag'"),
    case("method=svd_truncation", "method.norm_loss=1.5", message="method.norm_loss must be in [0, 1) or null, "
                                                                  "got 1.5"),
    case("method=svd_truncation", "method.norm_loss=-0.1", message="method.norm_loss must be in [0, 1) or null"),
    case("method=svd_truncation", "method.rank=0", message="method.rank must be >= 1 or null, got 0"),
    case("method=svd_truncation", "method.rank=1000", message="method.rank=1000 is at least every selected layer's "
                                                              "full rank (cut out: features.0 6, features.3 16), so the "
                                                              "run would truncate nothing"),
    case("method=svd_truncation", "method.rel_error=1.0", message="method.rel_error must be in [0, 1) or null, "
                                                                  "got 1.0"),
    case("method=svd_truncation", "method.rank=3", "method.rel_error=0.1",
         message="method.rank and method.rel_error are both set; set one"),
    case("method=svd_truncation", "method.norm_loss=null", message="set one of method.norm_loss (in [0, 1)), "
                                                                   "method.rank (>= 1) or method.rel_error"),
    # cp
    case("method=cp", "method.rank=0", message="method.rank must be >= 1, got 0"),
    case("method=cp", "method.rank=100000", message="method.rank=100000 saves no parameters in any selected conv, "
                                                    "so the run would compress nothing; ranks that save some: "
                                                    "features.0 up to 8"),
    case("method=cp", "method.n_iter_max=0", message="method.n_iter_max must be >= 1, got 0"),
    case("method=cp", "method.tol=-1", message="method.tol must be >= 0, got -1.0"),
    case("method=cp", "method.init=magic", message="method.init must be one of svd, random; got 'magic'"),
    case("method=cp", "method.seed=-1", message="method.seed must be in [0, 4294967295], got -1"),
    # tucker and tucker_adaptive
    case("method=tucker", "method.ranks=[0,4]", message="method.ranks entries must be integers >= 1 or fractions in "
                                                        "(0, 1]"),
    case("method=tucker", "method.ranks=[100,100]", message="method.ranks: rank 100 for mode out of layer features.3 "
                                                            "exceeds the mode size 16"),
    case("method=tucker", "method.modes=[out,diag]", message="method.modes must be distinct names among out, in, kh, "
                                                             "kw; got ['out', 'diag']"),
    case("method=tucker", "method.ranks=[4]", message="method.ranks has 1 entries for 2 modes (out, in); give one "
                                                      "per mode or a single value"),
    case("method=tucker", "method.rank=0", message="method.rank must be >= 1 or null, got 0"),
    case("method=tucker_adaptive", "method.tau=1.5", message="method.tau must be in (0, 1), got 1.5"),
    case("method=tucker_adaptive", "method.tau=0", message="method.tau must be in (0, 1), got 0.0"),
    case("method=tucker_adaptive", "method.r_min=50", "method.r_max=10",
         message="method.r_min (50) must be <= method.r_max (10)"),
    case("method=tucker_adaptive", "method.adapt_every=0", message="method.adapt_every must be >= 1, got 0"),
    case("method=tucker_adaptive", "method.adaptive_modes=[bogus]", message="method.adaptive_modes must be distinct "
                                                                            "names among out, in, kh, kw"),
    case("method=tucker_adaptive", "method.rank_init=0", message="method.rank_init must be an integer >= 1, a "
                                                                 "fraction in (0, 1], cap or tau; got 0"),
    # dlrt
    case(*DLRT, "method.tau=0", message="method.tau must be in (0, 1)"),
    case(*DLRT, "method.rank_cap=third", message="method.rank_cap must be one of r_max, half or a fraction in (0, 1] "
                                                 "of each full rank; got 'third'"),
    case("method=tucker_adaptive", "method.rank_cap=2", message="method.rank_cap must be one of r_max, half or a "
                                                                "fraction in (0, 1] of each full rank; got 2"),
    case("method=tucker_adaptive", "method.budget_knob=ranks", message="method.budget_knob must be one of rank_cap, "
                                                                       "tau; got 'ranks'"),
    case(*DLRT, "method.init=zeros", message="method.init must be one of decompose, random; got 'zeros'"),
    case(*DLRT, "method.init_seed=-1", message="method.init_seed must be in [0, 4294967295], got -1"),
    case(*DLRT, "method.r_min=0", message="method.r_min must be >= 1, got 0"),
    # tt, mpo, peps
    case("method=tt", "method.bond_dim=0", message="method.bond_dim must be >= 1, got 0"),
    case("method=tt", "method.num_cores=0", message="method.num_cores must be >= 1, got 0"),
    case("method=tt", "method.init=magic", message="method.init must be one of decompose, partial_norm, log_norm, "
                                                   "gaussian"),
    case("method=tt", "method.tolerance=[2,1000]", message="method.tolerance a must be in (0, 1], got 2.0"),
    case("method=tt", "method.tolerance=[0.5,0.9]", message="method.tolerance b must be >= 1, got 0.9"),
    case("method=tt", "method.tolerance=[1]", message="method.tolerance must be [a, b] with 0 < a <= 1 <= b"),
    case("method=tt", "method.init_std=-1", message="method.init_std must be >= 0, got -1.0"),
    case("method=tt", "method.max_iter=0", message="method.max_iter must be >= 1, got 0"),
    case("method=tt", "method.target_norm=-1", message="method.target_norm must be match_dense, paper or a number > 0"),
    case("method=tt", "method.factors=abc", message="method.factors must be null or {layer: {out: [...], in: [...]}}"),
    case("method=mpo", "method.bond_dim=0", message="method.bond_dim must be >= 1, got 0"),
    case("method=tt", "method.bond_dim=100000", message="method=tt with these settings leaves every selected layer "
                                                        "dense (features.3, classifier.0, classifier.2), so the run "
                                                        "would compress nothing; allowed: a smaller method.bond_dim"),
    case("method=tucker", "method.ranks=[1.0,1.0]", message="method=tucker with these settings leaves every selected "
                                                            "layer dense"),
    case("method=peps", *FC2, "method.grid_rows=0", message="method.grid_rows must be >= 1, got 0"),
    case("method=peps", *FC2, "method.num_cores=3", "method.grid_rows=2",
         message="method.num_cores (3) must be a multiple of method.grid_rows (2)"),
    case("method=peps", *FC2, "method.fit_lr=0", message="method.fit_lr must be > 0, got 0.0"),
    # adtn, adqc
    case(*ADTN, "method.depth=0", message="method.depth must be >= 1, got 0"),
    case(*ADTN, "method.qubits=1", message="method.qubits must be in [2, 30] or null, got 1"),
    case(*ADTN, "method.qubits=40", message="method.qubits must be in [2, 30] or null, got 40"),
    case(*ADTN, "method.init=zeros", message="method.init must be one of near_identity, random; got 'zeros'"),
    case(*ADTN, "method.fit_lr=0", message="method.fit_lr must be > 0, got 0.0"),
    case(*ADTN, "method.fit_steps=-1", message="method.fit_steps must be >= 0, got -1"),
    case(*ADTN, "method.fit_patience=0", message="method.fit_patience must be >= 1 or null, got 0"),
    case(*ADTN, "method.threads=0", message="method.threads must be in [1, 1024] or null, got 0"),
    case(*ADTN, "method.threads=1000", message="method.threads must be null or between 1 and"),
    case(*ADTN, "method.threads=100000", message="method.threads must be in [1, 1024] or null, got 100000"),
    case(*ADTN, "method.layout=square", message="method.layout must be one of flat, dims; got 'square'"),
    case(*ADTN, "method.checkpoint=most", message="method.checkpoint must be one of auto, none, sqrt, log"),
    case(*ADTN, "method.initial_state=one", message="method.initial_state must be one of plus, zero; got 'one'"),
    case(*ADTN, "method.fit_scale=fixed", message="method.fit_scale must be one of norm, free; got 'fixed'"),
    case(*ADTN, "method.groups=some", message="method.groups must be one of each, all"),
    case("method=adqc", "model=fc2", "method.depth=0", message="method.depth must be >= 1, got 0"),
]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    """A results directory that already holds a finished run."""
    root = tmp_path_factory.mktemp("results")
    run = root / "runs" / "fashion_mnist-lenet5-svd-s0-0123456789"
    (run / "checkpoints").mkdir(parents=True)
    (run / "record.json").write_text('{"status": "ok", "acc_retrained": 91.5}\n')
    (run / "state.json").write_text('{"attempts": 1}\n')
    return root


def contents(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


def cli_in_process(argv: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """`python -m tnbench <argv>` in this process: its exit code and stderr."""
    from tnbench.__main__ import cli
    from tnbench.pipeline import jobs

    def check_only(*args, **kwargs):  # input the check accepts would start a job: fail instead
        plan = check(*args, **kwargs)
        assert plan.problem, f"accepted: {' '.join(argv)}"
        return plan

    check = jobs.check_command
    monkeypatch.setattr(jobs, "check_command", check_only)
    monkeypatch.setattr(sys, "argv", ["tnbench", *argv])
    monkeypatch.setattr(logging, "raiseExceptions", logging.raiseExceptions)
    sigint = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit) as exit_:
            cli()
    finally:
        signal.signal(signal.SIGINT, sigint)
    return exit_.value.code, capsys.readouterr().err


def test_the_catalogue_has_at_least_100_cases():
    assert len(CATALOGUE) >= 100


@pytest.mark.parametrize("overrides,message", CATALOGUE)
def test_bad_input_is_one_line_naming_the_field_exit_2_before_any_work(overrides, message, recorded, tmp_path,
                                                                        monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # where the command runs: nothing may appear here
    before = contents(recorded)
    code, stderr = cli_in_process([*overrides, f"paths.results_dir={recorded}"], monkeypatch, capsys)
    assert code == 2, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert message in lines[0]
    assert contents(recorded) == before  # no run dir, no record; the finished run untouched
    assert not list(tmp_path.iterdir())
