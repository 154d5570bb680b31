# The two commands of the README: `make demo` and `make test`. Both set up ./.venv first.
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= demo-out
REAL ?= ../shared/data/real/philips-ingenia-2mm

.PHONY: setup demo test lint

setup:
	@VENV=$(VENV) scripts/setup.sh

# A phantom block degraded 2x and super-resolved by tricubic and the shipped CSR-dMRI (NIfTIs,
# metrics.md, comparison.png); a small phantom cohort (3 HCP-like subjects), its overview figure
# and its evaluation (tricubic, the default model and the joint q-space model); then a real scan
# upsampled 2x (tricubic, and the joint q-space model with the scan's T1w).
demo: setup
	$(BIN)/csrdmri demo --out $(OUT)/demo
	$(BIN)/csrdmri phantom --out $(OUT)/phantom --subjects 3 --seed 2026
	$(BIN)/csrdmri figure $(OUT)/phantom/phantom000 --out $(OUT)/phantom000.png
	$(BIN)/csrdmri evaluate --data $(OUT)/phantom --directions 12 --models tricubic,csr-dmri-cpu,csr-qspace-cpu --out $(OUT)/evaluation
	@if [ -d "$(REAL)" ]; then \
	  set -e; \
	  echo "$(BIN)/csrdmri info $(REAL)"; $(BIN)/csrdmri info $(REAL); \
	  echo "$(BIN)/csrdmri upsample $(REAL) --scale 2 --model tricubic --out $(OUT)/real_2x.nii.gz --force"; \
	  $(BIN)/csrdmri upsample $(REAL) --scale 2 --model tricubic --out $(OUT)/real_2x.nii.gz --force; \
	  echo "$(BIN)/csrdmri upsample $(REAL) --scale 2 --model csr-qspace-cpu --out $(OUT)/real_2x_qspace.nii.gz --force"; \
	  $(BIN)/csrdmri upsample $(REAL) --scale 2 --model csr-qspace-cpu --out $(OUT)/real_2x_qspace.nii.gz --force; \
	else echo "($(REAL) not found: skipping the real-scan part)"; fi

lint: setup
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest
