# The two commands of the README: `make demo` and `make test`. Both set up ./.venv first.
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= demo-out
REAL ?= ../shared/data/real/philips-ingenia-2mm

.PHONY: setup demo test lint

setup:
	@VENV=$(VENV) scripts/setup.sh

# The embedded default data: a small phantom cohort (3 HCP-like subjects, ~1 min), its
# overview figure and the paper-protocol evaluation; then a real scan upsampled 2x.
demo: setup
	$(BIN)/csrdmri phantom --out $(OUT)/phantom --subjects 3 --seed 0
	$(BIN)/csrdmri figure $(OUT)/phantom/phantom000 --out $(OUT)/phantom000.png
	$(BIN)/csrdmri evaluate --data $(OUT)/phantom --out $(OUT)/evaluation
	@if [ -d "$(REAL)" ]; then \
	  set -e; \
	  echo "$(BIN)/csrdmri info $(REAL)"; $(BIN)/csrdmri info $(REAL); \
	  echo "$(BIN)/csrdmri upsample $(REAL) --scale 2 --out $(OUT)/real_2x.nii.gz --force"; \
	  $(BIN)/csrdmri upsample $(REAL) --scale 2 --out $(OUT)/real_2x.nii.gz --force; \
	else echo "($(REAL) not found: skipping the real-scan part)"; fi

lint: setup
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -m "not slow"
