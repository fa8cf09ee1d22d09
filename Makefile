# The two commands of the README. Each creates .venv first if it is missing.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: book test notebooks env clean

env:
	bash scripts/setup_env.sh

book: env  ## the rendered book, HTML under _build/html
	$(VENV)/bin/jupyter-book build . -W --keep-going

test: env  ## every unit test, every chapter (nbval) and a build of the book
	$(PY) -m pytest --nbval-lax

notebooks: env  ## re-execute every chapter in place (commit the result)
	$(PY) scripts/run_notebooks.py

clean:
	rm -rf _build
