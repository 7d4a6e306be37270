# Every target creates or reuses the project's virtual environment (.venv)
# on first use: a fresh machine needs only Python 3 and make.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STUBS := build/typings
STUBS_STAMP := $(STUBS)/.installed
REPORT ?= reports/latest
JOBS ?= 2
PORT ?=
PYTEST_ARGS ?=
KEYS ?=
ARCH ?=
UF2 ?=

FIRMWARE_BOARD ?= RPI_PICO
MICROPYTHON_SRC ?=

.PHONY: firmware venv run test sim bench lint typecheck mpy vectors pytest flash pico clean help

help:
	@echo "make run        run the standard scenario suite on a virtual board, write $(REPORT)"
	@echo "make test       everything CI checks: lint, mpy-cross, type checks, pytest"
	@echo "make sim        start a virtual board for a person (prints its ports)"
	@echo "make bench      benchmarks that print figures"
	@echo "make flash PORT=/dev/ttyACM0 KEYS=FILE   compile, copy to a Pico, provision keys, check"
	@echo "make pico       install the emulated Pico (npm ci in pico/; needs Node.js)"
	@echo "make firmware MICROPYTHON_SRC=PATH   the pump frozen into its own UF2 (build/firmware/;"
	@echo "                FIRMWARE_BOARD=RPI_PICO2 for a Pico 2, RP2350)"
	@echo "make venv       create or update .venv (what every target does first)"
	@echo "make lint | typecheck | mpy | vectors | clean"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

$(STUBS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --no-user --upgrade --target $(STUBS) \
		micropython-rp2-rpi-pico-stubs==1.29.0.post1
	@touch $@

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/pumpbench run bench/scenarios --target sim --jobs $(JOBS) --report $(REPORT)

test: lint mpy typecheck pytest

# Two passes: the lockstep tests on both cores (pytest-xdist, one file per
# worker), then the tests marked realtime alone, since their clock follows wall
# time and a busy neighbour would change what they see. A pass that selects
# nothing (exit 5) is not a failure. A --junitxml=DIR/junit.xml in PYTEST_ARGS
# gives DIR/junit.xml and DIR/realtime-junit.xml.
PYTEST_WORKERS ?= 2
pytest: $(STAMP) pico
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not realtime" $(PYTEST_ARGS) || test $$? -eq 5
	$(BIN)/python -m pytest -m realtime $(PYTEST_ARGS:junit.xml=realtime-junit.xml) || test $$? -eq 5

# The emulated Pico (pico/README.md): rp2040js exactly as pico/package-lock.json
# pins it. Without Node.js this says so and the emulated-Pico tests skip.
PICO_STAMP := pico/node_modules/.installed
pico: $(PICO_STAMP)
$(PICO_STAMP): pico/package.json pico/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd pico && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else echo "make pico: npm not found (Debian: apt-get install nodejs npm): the emulated-Pico tests will skip"; fi

sim: $(STAMP)
	$(BIN)/pumpbench sim

SEEDS ?= 1001 1002 1003 1004 1005
bench: $(STAMP)
	$(BIN)/python -m bench.benchmarks
	@for j in 1 2; do echo "standard suite, --jobs $$j:"; \
		$(BIN)/pumpbench run bench/scenarios --jobs $$j --no-plots --report build/bench-suite-$$j \
		| grep ' scenarios: '; done
	@# The same suite under other plant noise: every scenario with the rig's
	@# seed overridden (a scenario that passes only on its own seed is a
	@# monitor tuned to one noise draw, not a monitor).
	@for s in $(SEEDS); do echo "standard suite, --seed $$s:"; \
		$(BIN)/pumpbench run bench/scenarios --seed $$s --jobs 2 --no-plots \
		--report build/bench-seed-$$s | grep -E '^(FAIL|ERROR) | scenarios: '; done
	@echo "robustness long runs (docs/robustness.md), a few minutes:"
	$(BIN)/python -m bench.robustness --frames 300000 --cycles 2000 --scenarios 12

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

typecheck: $(STAMP) $(STUBS_STAMP)
	$(BIN)/mypy --config-file firmware/mypy.ini
	$(BIN)/mypy

mpy: $(STAMP)
	$(BIN)/python -m bench.board.image --out build/mpy

vectors: $(STAMP)
	$(BIN)/python -m protocol.generate

# The pump frozen into its own UF2 (bench/board/firmware.py; docs/hardware.md):
# MICROPYTHON_SRC=a MicroPython release tarball or checkout; FIRMWARE_BOARD=RPI_PICO
# (RP2040, the default) or RPI_PICO2 (RP2350: pump-<version>-RPI_PICO2.uf2, family
# 0xe48bff59, its record in manifest-RPI_PICO2.json).
firmware: $(STAMP)
	$(BIN)/python -m bench.board.firmware --board $(FIRMWARE_BOARD) $(if $(MICROPYTHON_SRC),--src $(MICROPYTHON_SRC),)

flash: $(STAMP)
	@test -n "$(PORT)" -a -n "$(KEYS)" || { echo "make flash: give the port and the pump's key file: make flash PORT=/dev/ttyACM0 KEYS=~/pump-0001.keys (made if missing)" >&2; exit 2; }
	$(BIN)/python -m bench.board.flash --port $(PORT) --key-file $(KEYS) $(if $(ARCH),--arch $(ARCH),) $(if $(UF2),--uf2 $(filter-out 1,$(UF2)),) $(if $(BOOT_TIMEOUT),--boot-timeout $(BOOT_TIMEOUT),)

clean:
	rm -rf build reports .pytest_cache .mypy_cache .ruff_cache
