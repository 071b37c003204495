# histobatch — set-up, demo and tests. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch 2.14.1 is a CUDA build that also runs on CPU; pin it so every machine gets the same one.
TORCH ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install demo test lint evaluate train clean gpu-data ablation bench-data bench-tia-venv bench-efficiency bench-memory bench-margin bench-workers bench-tiatoolbox bench-runtime

# Real data (read-only) for training and evaluation; see ../shared/data/README.md.
DATA ?= ../shared/data

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[test,workflow,onnx,scverse]"
	touch $@

examples/data/cmu_small_region.svs: | install
	$(BIN)/python examples/fetch_example.py examples/data

demo: install examples/data/cmu_small_region.svs
	$(BIN)/histobatch segment examples/data/cmu_small_region.svs -o results/demo
	@echo ""
	@echo "Results: results/demo/cmu_small_region/ (overview.png, nuclei.parquet, masks.ome.zarr, summary.json)"
	@echo "Cohort table: results/demo/cohort.csv"

test: install
	$(BIN)/ruff check histobatch tests
	$(BIN)/python -m pytest -q

# The default model's test-set numbers (README "Model card"), from the packaged model.
evaluate: install
	$(BIN)/histobatch evaluate --data $(DATA)/consep4/test --model default --out results/evaluation/metrics.json

# Re-train the default model (hours on a 2-core CPU; resumable: make train again continues).
train: install
	$(BIN)/histobatch train --config examples/train_mixed.yaml --resume

lint: install
	$(BIN)/ruff check histobatch tests
	$(BIN)/ruff format --check histobatch tests

clean:
	rm -rf results .pytest_cache

# Training and test data packed for a lent GPU machine (53 MB: pass bench/work/data in its carry
# list), then `bench/gpu_train.sh` there trains examples/train_consep_gpu.yaml and evaluates it.
gpu-data: install
	$(BIN)/python bench/gpu_data.py

# The recipe with vs without augmentation and pre-training, 20 fine-tuning epochs each (87 min here).
ablation: install
	cd bench && ../$(BIN)/python ablation.py --finetune-epochs 20

# Real data the benchmarks need, copied into the ignored bench/work/data (for a machine without
# ../shared, e.g. a lent GPU machine: pass bench/work/data in its carry list).
bench-data:
	mkdir -p bench/work/data/slides bench/work/data/consep4/train
	cp $(DATA)/slides/cmu-1-small-region.svs bench/work/data/slides/
	cp -r $(DATA)/consep4/train/Images bench/work/data/consep4/train/

# TIAToolbox in its own environment (it pins torch < 2.13 and numpy < 2.4.4), with histobatch in it
# too so that it can run histobatch's network; only the comparison benchmark uses it.
TIA_VENV ?= bench/work/tia-venv
$(TIA_VENV)/.installed:
	$(PYTHON) -m venv $(TIA_VENV)
	$(TIA_VENV)/bin/pip install --quiet --upgrade pip
	$(TIA_VENV)/bin/pip install --quiet -e ".[tiatoolbox]"
	touch $@

bench-tia-venv: $(TIA_VENV)/.installed

# One command per benchmark (results appended to bench/RESULTS.md).
bench-efficiency: install
	cd bench && ../$(BIN)/python efficiency.py
bench-memory: install
	cd bench && ../$(BIN)/python memory.py
bench-margin: install
	cd bench && ../$(BIN)/python margin.py
bench-workers: install
	cd bench && ../$(BIN)/python workers.py
# --runtime torch vs onnx on the CMU slide: wall time, nuclei, agreement within 2 µm.
bench-runtime: install
	cd bench && ../$(BIN)/python runtime.py
bench-tiatoolbox: install $(TIA_VENV)/.installed
	cd bench && ../$(BIN)/python vs_tiatoolbox.py --tia-python ../$(TIA_VENV)/bin/python
