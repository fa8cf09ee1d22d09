# The two commands of the README. Each creates .venv first if it is missing.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: book pdf test notebooks env clean

env:
	bash scripts/setup_env.sh

book: env  ## the rendered book from the committed outputs (nothing is executed), HTML under _build/html
	$(VENV)/bin/jupyter-book build . -W --keep-going

pdf: book  ## the whole book as one PDF, _build/html/snn-norm-lite.pdf (needs Chromium)
	$(PY) scripts/build_pdf.py

test: env  ## every unit test, every chapter (nbval), a build of the book and its pages read in Chromium
	$(PY) -m pytest --nbval-lax

notebooks: env  ## re-execute every chapter in place (commit the result)
	$(PY) scripts/run_notebooks.py

clean:
	rm -rf _build
