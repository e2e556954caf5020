# cachesync: the commands the README uses. `make help` lists them.
#
# One cargo profile (dev, with optimised dependencies; see Cargo.toml) serves `demo` and
# `test`, so a fresh machine compiles RocksDB once. Keep the target directory between builds.

SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
CARGO_TARGET_DIR ?= $(HOME)/.cache/cachesync-target
export CARGO_TARGET_DIR

BIN := $(CARGO_TARGET_DIR)/debug/cachesync
# What building and testing need: a C++ compiler and libclang for RocksDB, sshd, sshfs and FUSE for
# the tests over a real network file system; dbus-daemon for the desktop notifications' test bus;
# chromium and its WebDriver for the test that uses the page (`cachesync ui`) in a real browser.
DEPS := g++ libclang-dev sshfs openssh-server openssh-client fuse3 iproute2 git make attr dbus-daemon \
	chromium chromium-driver
# What the benchmarks add: the peers, git for the status anchor, and a real tree (the Linux
# kernel source tarball).
BENCH_DEPS := rsync rclone unison git xz-utils linux-source
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
# Arguments for the benchmark harness (`cachesync-bench --help`), e.g. BENCH_ARGS="--quick".
BENCH_ARGS ?=

# Installs the Debian packages named in $(1) that are missing.
define install_missing
	@missing=""; \
	for p in $(1); do \
		dpkg -s "$$p" 2>/dev/null | grep -q '^Status: install ok installed' \
			|| missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "deps: installing$$missing"; \
		$(SUDO) apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -q --no-install-recommends $$missing; \
	fi
endef

.PHONY: help deps bench-deps build demo test check bench faults install install-files uninstall

# Where `make install` puts cachesync: PREFIX/bin, PREFIX/share/{man,bash-completion,zsh,fish},
# and systemd user units in PREFIX/share/systemd/user (~/.local/share/systemd/user by default,
# where `systemctl --user` finds them).
PREFIX ?= $(HOME)/.local
INSTALL_BIN ?= $(CARGO_TARGET_DIR)/release/cachesync
UNITS := cachesync-prefetch@.service cachesync-prefetch@.timer cachesync-mount@.service \
	cachesync-ui.service
INSTALLED := bin/cachesync share/bash-completion/completions/cachesync \
	share/zsh/site-functions/_cachesync share/fish/vendor_completions.d/cachesync.fish \
	$(addprefix share/systemd/user/,$(UNITS))

help: ## List the targets
	@awk 'BEGIN { FS = ":.*## " } /^[a-zA-Z_-]+:.*## / { printf "  %-9s %s\n", $$1, $$2 }' \
		$(MAKEFILE_LIST)

deps: ## Install the system packages needed to build and test (only those missing)
	$(call install_missing,$(DEPS))

bench-deps: deps
	$(call install_missing,$(BENCH_DEPS))

build: ## Build the workspace and the cachesync binary (dev profile)
	$(CARGO) build

demo: deps build ## Guided tour of the cachesync CLI on a sample remote
	bash testdata/demo.sh "$(BIN)"

# The awk passes cargo's output through and closes with the total over all test binaries
# ("tests: N passed, N failed"), so a run that executed no test is plain to see.
test: deps ## Run every test (unit, integration, doc); sshfs tests start their own sshd
	@set -o pipefail; \
	{ $(CARGO) test --workspace --all-targets && $(CARGO) test --workspace --doc; } 2>&1 \
	| awk '{ print; fflush() } \
		/^test result:/ { for (i = 1; i < NF; i++) { \
			if ($$(i + 1) ~ /^passed/) passed += $$i; \
			if ($$(i + 1) ~ /^failed/) failed += $$i } } \
		END { printf "tests: %d passed, %d failed\n", passed, failed }'

check: deps ## Formatting, clippy with warnings as errors, then the tests
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@$(MAKE) --no-print-directory test

bench: bench-deps ## Benchmarks: micro (criterion), then cachesync against rsync, rclone, unison (long)
	$(CARGO) bench -p cachesync-objects -p cachesync-engine
	$(CARGO) build --release -p cachesync -p cachesync-bench
	$(CARGO_TARGET_DIR)/release/cachesync-bench \
		--cachesync $(CARGO_TARGET_DIR)/release/cachesync --out bench-results $(BENCH_ARGS)

install: ## Install an optimised build, completions, man pages and systemd user units under PREFIX (~/.local)
	$(CARGO) build --release -p cachesync
	@$(MAKE) --no-print-directory install-files

# What `install` copies, from a binary already built (INSTALL_BIN).
install-files:
	install -D -m 755 "$(INSTALL_BIN)" "$(DESTDIR)$(PREFIX)/bin/cachesync"
	install -d "$(DESTDIR)$(PREFIX)/share/bash-completion/completions" \
		"$(DESTDIR)$(PREFIX)/share/zsh/site-functions" \
		"$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d" \
		"$(DESTDIR)$(PREFIX)/share/man/man1" "$(DESTDIR)$(PREFIX)/share/systemd/user"
	"$(INSTALL_BIN)" completions bash > "$(DESTDIR)$(PREFIX)/share/bash-completion/completions/cachesync"
	"$(INSTALL_BIN)" completions zsh > "$(DESTDIR)$(PREFIX)/share/zsh/site-functions/_cachesync"
	"$(INSTALL_BIN)" completions fish > "$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/cachesync.fish"
	"$(INSTALL_BIN)" man-pages "$(DESTDIR)$(PREFIX)/share/man/man1"
	for u in $(UNITS); do \
		sed 's|@BINDIR@|$(PREFIX)/bin|g' "dist/systemd/$$u" > "$(DESTDIR)$(PREFIX)/share/systemd/user/$$u" || exit 1; \
	done
	@echo "installed cachesync in $(DESTDIR)$(PREFIX)/bin"

uninstall: ## Remove what `make install` put under PREFIX
	rm -f $(addprefix "$(DESTDIR)$(PREFIX)/,$(addsuffix ",$(INSTALLED)))
	rm -f "$(DESTDIR)$(PREFIX)"/share/man/man1/cachesync.1 "$(DESTDIR)$(PREFIX)"/share/man/man1/cachesync-*.1

# The fault suite's long version. `make test` runs a bounded slice of the same tests; here
# every crash point of every command is killed, 16 outages are drawn instead of 4, and the
# decoders get 20,000 cases. FAULTS_SEED=N draws other outage moments.
faults: deps ## The fault suite in full: kill -9 everywhere, outages, disk full, corruption, hostile input
	CACHESYNC_FAULTS=all $(if $(FAULTS_SEED),CACHESYNC_FAULTS_SEED=$(FAULTS_SEED)) $(CARGO) test \
		-p cachesync --test faults --test outages --test disk_full --test hostile \
		--test racy --test safety --test workspace_lock --test randomized -- --nocapture
	CACHESYNC_FAULTS=all $(CARGO) test -p cachesync-objects --test hostile_input
	CACHESYNC_FAULTS=all $(CARGO) test -p cachesync-engine --test hostile_config --test prepare
