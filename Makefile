# The two commands of the README:
#   make demo   set up .venv and run the main job end to end, offline, on the built-in corpus
#   make test   set up .venv (with the test and peer libraries) and run the test suite
PYTHON ?= python3
VENV ?= .venv
PIP = $(VENV)/bin/python -m pip
STAMP_DEMO = $(VENV)/.installed-demo
STAMP_TEST = $(VENV)/.installed-test

.PHONY: demo test lint bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(STAMP_DEMO): $(VENV)/bin/python pyproject.toml constraints.txt
	$(PIP) install -q -c constraints.txt -e .
	$(VENV)/bin/python -m compileall -q dlnlp
	touch $@

$(STAMP_TEST): $(VENV)/bin/python pyproject.toml constraints.txt
	$(PIP) install -q -c constraints.txt -e '.[test,peers,plot,dev]'
	$(VENV)/bin/python -m compileall -q dlnlp
	touch $@ $(STAMP_DEMO)

demo: $(STAMP_DEMO)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/demo.sh

test: $(STAMP_TEST)
	$(VENV)/bin/python -m pytest -q

lint: $(STAMP_TEST)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) demo-run
