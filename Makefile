# tnbench: `make demo` and `make test` do all the set-up on a fresh machine.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DATA    := data
FMNIST  := $(DATA)/FashionMNIST/raw/train-images-idx3-ubyte
WHEEL_TEST := tests/integration/test_wheel.py
export WANDB_MODE ?= offline
export WANDB_SILENT ?= true
export PYTHONUNBUFFERED := 1

.PHONY: demo test test-fast wheel-check lint bench data install results report browser clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch/torchvision first: pip takes these exact builds from this machine's disk
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# Fashion-MNIST offline: Debian's dataset-fashion-mnist, un-gzipped where torchvision looks.
data: $(FMNIST)

$(FMNIST):
	test -d /usr/share/datasets/fashion-mnist || \
	  (command -v apt-get >/dev/null && (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
	   sudo -n apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1)) || \
	  echo "note: dataset-fashion-mnist not installable here; tnbench will download Fashion-MNIST when online"
	mkdir -p $(DATA)/FashionMNIST/raw
	for f in /usr/share/datasets/fashion-mnist/*.gz; do \
	  [ -f "$$f" ] && gunzip -c "$$f" > $(DATA)/FashionMNIST/raw/$$(basename "$$f" .gz); done; true

# The default job: LeNet-5 on Fashion-MNIST, SVD rank 8, CPU, W&B offline; then the table.
demo: install data
	$(BIN)/python -m tnbench
	$(BIN)/python -m tnbench.results results/runs

test: install data browser wheel-check
	$(BIN)/python -m pytest -q tests --deselect $(WHEEL_TEST)

# The package as users get it: the wheel built from the sources, installed (not editable) in a
# fresh venv that borrows this venv's dependencies, runs a job from a directory outside the checkout.
wheel-check: install
	$(BIN)/python -m pytest -q $(WHEEL_TEST) -p no:cacheprovider

# The suite without the tests marked slow (end-to-end runs, sweeps, kills): a minute or two.
test-fast: install data
	$(BIN)/python -m pytest -q tests -m "not slow and not bench"

lint: install
	$(BIN)/ruff check tnbench tests

# Headless Chromium renders report.html in the report test (Debian's package).
browser:
	@command -v chromium >/dev/null || apt-get install -y -q chromium >/dev/null 2>&1 || \
	  sudo -n apt-get install -y -q chromium >/dev/null 2>&1 || \
	  echo "note: chromium not installable here; the report rendering test will be skipped"

# The comparison report of every recorded run (tables, plots, report.html) in results/report/.
report: install
	$(BIN)/python -m tnbench.report --runs results/runs --out results/report

bench: install data
	$(BIN)/python -m pytest -q -m bench tests -p no:cacheprovider -o addopts=""

results: install
	$(BIN)/python -m tnbench.results results/runs --csv results/tables/runs.csv --markdown results/tables/runs.md

clean:
	rm -rf results/runs results/cache outputs multirun
