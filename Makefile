# Tembo: two commands for a new user.
#   make demo   simulated herd -> bridge (SQLite) -> ranger dashboard on http://127.0.0.1:8501
#               (DEMO_ARGS="--role visitor --address 0.0.0.0" for a kiosk reachable on the LAN)
#   make test   everything the tests need, then the whole suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tembo-installed

.PHONY: setup system-deps test lint demo demo-headless formatter clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml scripts/system-deps.sh
	bash scripts/system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

system-deps:
	bash scripts/system-deps.sh

lint: setup
	$(BIN)/ruff check .

# The suite runs on the cores this process may use, at most four (pytest-xdist), a test file per
# worker at a time, the files of slow stories first (tests/conftest.py); each worker starts its own
# PostgreSQL and Mosquitto on free ports in its own temporary folders. TEST_WORKERS=1 runs it in one process.
TEST_WORKERS ?= $(shell $(PYTHON) -c 'import os; print(min(len(os.sched_getaffinity(0)), 4))')

# The suite's many processes (workers, each bridge, dashboard and CLI a test starts) share the project's
# compiled modules (__pycache__, ignored by git) even where the environment asks Python not to write
# them: otherwise each process compiles them again (about 0.45 s for each bridge started).
test: export PYTHONDONTWRITEBYTECODE =
test: setup
	$(BIN)/ruff check .
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

demo: setup
	$(BIN)/tembo demo $(DEMO_ARGS)

demo-headless: setup
	$(BIN)/tembo demo --headless --collars 20 --days 2 --seed 1

formatter: setup
	$(BIN)/python -m lora_bridge.formatter > formatters/tembo-formatter.js

clean:
	rm -rf var .pytest_cache
