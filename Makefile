# The two quick-start commands: `make demo` and `make test`. Each installs what it needs on first use.
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: demo test lint migrations-check system-deps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

demo: $(STAMP)
	$(BIN)/kindstride demo

# From Debian: Chromium for the browser tests (Playwright drives it; it never downloads a browser) and
# DejaVu fonts, which have every Vietnamese letter, for certificates and receipts.
system-deps:
	@{ command -v chromium >/dev/null && [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; } || \
	  { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium fonts-dejavu-core >/dev/null; } \
	  || echo "Chromium or fonts-dejavu-core is missing: apt-get install chromium fonts-dejavu-core"
	@# nginx: the load balancer of the topology test (tests/test_topology.py, deploy/nginx/kindstride.conf).
	@{ [ -x /usr/sbin/nginx ] || command -v nginx >/dev/null; } || \
	  { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq nginx >/dev/null; } \
	  || echo "nginx is missing: apt-get install nginx"

lint: $(STAMP)
	$(BIN)/ruff check platform rules_plugins tests migrations

test: $(STAMP) system-deps lint
	$(BIN)/python -m pytest

# Migrate an empty PostgreSQL database and an empty SQLite file, then compare models with migrations.
migrations-check: $(STAMP)
	$(BIN)/python -m tests.support.migrations_check
