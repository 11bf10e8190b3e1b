# gomflow-messaging: `make dev` runs it locally, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: dev test lint format bench drills install services browser stop env migrate seed clean i18n i18n-check

$(STAMP): pyproject.toml
	@bash scripts/bootstrap-venv.sh "$(PYTHON)" "$(VENV)"
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP)

env:
	@bash scripts/write-env.sh "$(PYTHON)"

# Uses what listens at DATABASE_URL / REDIS_URL (environment, else .env), else starts private
# servers with their data in .data/; `make stop` stops those (and only those).
services: install
	@PY=$(PY) bash scripts/ensure-services.sh

stop:
	@bash scripts/stop-services.sh

migrate: services
	$(VENV)/bin/gomflow-messaging migrate

seed: migrate
	$(VENV)/bin/gomflow-messaging seed-demo

dev: env install services migrate seed
	ENABLE_SANDBOX=true $(VENV)/bin/gomflow-messaging serve

# The console's browser tests drive Debian's chromium (installed here when missing).
browser:
	@bash scripts/ensure-browser.sh

test: install services browser
	bash scripts/run-tests.sh $(PY)

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache
	@$(MAKE) --no-print-directory i18n-check

format: install
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

# Translations: extract the marked strings (see babel.cfg) into the template, then merge it
# into each language's catalogue (created when missing). Translators edit the .po files.
PYBABEL ?= $(VENV)/bin/pybabel
LOCALES_DIR := src/gomflow_messaging/locales
I18N_LANGS := fil ms

# Compile every catalogue with Babel's checks (formats, placeholders, plural forms) into a
# scratch folder: a catalogue that gettext tools reject fails here, not in someone's build.
# Then warn on every button label (a msgid written `label(...)`) longer than 20 characters in
# any language: chats cut button titles there.
i18n-check:
	@out=$$(mktemp -d); trap 'rm -rf "$$out"' EXIT; \
	for lang in $(I18N_LANGS); do \
		$(PYBABEL) compile --statistics -l $$lang -o "$$out/$$lang.mo" \
			-i $(LOCALES_DIR)/$$lang/LC_MESSAGES/messages.po || exit 1; \
	done
	@$(PY) scripts/i18n_labels.py check

# The template is rewritten only when a text changed (not for a new POT-Creation-Date alone),
# with each button label marked for translators (scripts/i18n_labels.py).
i18n:
	$(PYBABEL) extract -F babel.cfg --project=gomflow-messaging --add-comments=Translators: \
		--no-location --sort-output \
		--header-comment="# Bot and notification texts of gomflow-messaging; English is the source." \
		-o $(LOCALES_DIR)/messages.pot.new src/gomflow_messaging
	$(PY) scripts/i18n_labels.py pot $(LOCALES_DIR)/messages.pot.new $(LOCALES_DIR)/messages.pot
	@for lang in $(I18N_LANGS); do \
		$(PYBABEL) update --init-missing --previous --ignore-obsolete --ignore-pot-creation-date \
			-i $(LOCALES_DIR)/messages.pot -d $(LOCALES_DIR) -l $$lang || exit 1; \
	done

# Benchmarks and fault drills (about 30 minutes on 2 cores): JSON and a chart per run under
# bench/results/, the latest also as bench/latest.json and bench/latest.png (see README).
bench: install services
	$(PY) bench/run.py --latest

drills: install services
	$(PY) bench/run.py drills

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
