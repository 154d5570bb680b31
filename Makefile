# The two commands of the README: `make demo` and `make test`. Both set up ./.venv first.
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= ../shared/data/real/philips-ingenia-2mm
OUT ?= demo-out

.PHONY: setup demo test test-slow lint

setup:
	@VENV=$(VENV) scripts/setup.sh

demo: setup
	$(BIN)/csrdmri info $(DATA)
	$(BIN)/csrdmri upsample $(DATA) --scale 2 --model tricubic --out $(OUT)/dwi_2x.nii.gz --force
	$(BIN)/csrdmri info $(OUT)/dwi_2x.nii.gz

lint: setup
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -m "not slow"

test-slow: setup
	$(BIN)/python -m pytest -m slow
