# The README's two commands.  `make test` creates .venv when missing, installs the project with
# its test extras into it, runs pytest and then nbval over the book's notebooks.  `make reproduce`
# trains and evaluates every run through the notebooks (papermill): the study, then the v1 cpu
# profile, and builds the book.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: test test-fast install benchmark reproduce book-check clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

# pytest exits 5 when it collects no test; ALLOW_NO_TESTS=1 (set by .ci/run) turns that into 0.
# nbval re-runs every notebook of the book (and the training/evaluation notebooks under the smoke
# profile) and compares the outputs with the stored ones; volatile cells are tagged.
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ] && [ -n "$(ALLOW_NO_TESTS)" ]; then echo "pytest: no tests collected"; rc=0; fi; \
	[ $$rc -eq 0 ] || exit $$rc; \
	$(PY) -m pytest --nbval --nbval-current-env -p no:cacheprovider -q $$($(PY) -m aafcore.reproduce --nbval-list)

# the fast suite alone: no subprocesses, papermill, torchrun, whole runs or nbval (tests marked slow)
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

benchmark: $(STAMP)
	$(PY) benchmarks/aaf_loss.py --out results/benchmarks/aaf_loss_cpu.json

# the study (protocol/study.yaml: its runs two side by side, then its evaluations), then the v1
# cpu profile, its results notebooks and the book; finished runs and evaluations are skipped
JOBS ?= 2
reproduce: $(STAMP)
	$(VENV)/bin/aaf reproduce --profile study --jobs $(JOBS) --no-reports --no-book
	$(VENV)/bin/aaf reproduce --profile cpu

# the built book in a browser: builds it (execution off), opens every page in headless Chromium
# (Debian: apt-get install -y chromium) and fails on raw LaTeX, overflow at 1400 px, console errors,
# NaN, absolute paths and CLI advice in outputs; screenshots go to _build/book-check/.
# BOOK_CHECK_ARGS: e.g. --no-build, --repository-url https://github.com/OWNER/REPO, --shots all
book-check: $(STAMP)
	$(PY) scripts/book_check.py $(BOOK_CHECK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
