# berth - build, test, run. See README.md.
CC      ?= gcc
BUILD   ?= build
SANITIZE ?=
OPT     ?= -O2
CFLAGS  ?=
CFLAGS  += -I/usr/include/libnl3 -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -Wno-format-truncation $(OPT) -g -Isrc -D_GNU_SOURCE -MMD -MP
LDLIBS  += -lnl-route-3 -lnl-3 -lnftnl -lmnl -lmicrohttpd -lgnutls -ljansson -lyaml -lsqlite3 -lcurl -lssl -lcrypto -lz -lpthread -lm

# The allocator: mimalloc takes malloc/free over for the whole process (it is
# linked first, so its symbols win); docs/decisions.md "Allocator". Sanitizer
# builds keep the C library's, which ASan replaces.
MALLOC_LIB ?= -lmimalloc

ifeq ($(SANITIZE),1)
BUILD   := build-asan
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
MALLOC_LIB :=
endif

LIB_SRC  := $(shell find src -name '*.c' ! -path 'src/berth.c' | sort)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
# The web UI's files (ui/), built into the binary (scripts/embed.sh, docs/ui.md).
UI_FILES := $(shell find ui -type f ! -name '.*')
LIB_OBJ  += $(BUILD)/gen/ui_assets.o
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TOOLS    := $(BUILD)/tests/httpd-tiny $(BUILD)/tests/memhog

.PHONY: all deps check test unit e2e run asan-test fuzz bench soak clean format install man deb

all: $(BUILD)/berth $(UNIT_BIN) $(TOOLS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	@$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/gen/ui_assets.c: scripts/embed.sh $(UI_FILES)
	@echo "  EMBED ui/"
	@scripts/embed.sh ui $@

$(BUILD)/gen/ui_assets.o: $(BUILD)/gen/ui_assets.c src/server/ui_assets.h
	@echo "  CC    $<"
	@$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libberth.a: $(LIB_OBJ)
	@rm -f $@
	@ar rcs $@ $^

$(BUILD)/berth: $(BUILD)/src/berth.o $(BUILD)/libberth.a
	@echo "  LINK  $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(MALLOC_LIB) $(LDLIBS)

$(BUILD)/tests/test_%: tests/unit/test_%.c tests/unit/unit.h $(BUILD)/libberth.a
	@mkdir -p $(dir $@)
	@echo "  TEST  $@"
	@$(CC) $(CFLAGS) -Itests/unit $(LDFLAGS) -o $@ $< $(BUILD)/libberth.a $(MALLOC_LIB) $(LDLIBS)

# Small static programs that tests run as tasks (static: they also go into test images).
$(BUILD)/tests/%: tests/tools/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O2 -Wall -Wextra -Werror -static -o $@ $< 2>/dev/null || $(CC) -std=gnu11 -O2 -Wall -Wextra -Werror -o $@ $<

# Install the Debian packages the build and the tests need (no-op when present).
deps:
	@scripts/deps.sh

# The one test command (README): deps, build, unit tests, end-to-end tests.
test: deps
	@$(MAKE) --no-print-directory all
	@scripts/run-tests.sh $(BUILD)

unit: all
	@scripts/run-tests.sh $(BUILD) unit

e2e: all
	@scripts/run-tests.sh $(BUILD) e2e

# ASan+UBSan build of the whole suite.
asan-test: deps
	@$(MAKE) --no-print-directory SANITIZE=1 all
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 scripts/run-tests.sh build-asan

# The one run command (README): build and start a single-node cluster with an example job.
run: deps
	@$(MAKE) --no-print-directory $(BUILD)/berth
	@scripts/run-example.sh $(BUILD)/berth

fuzz: deps
	@scripts/fuzz.sh

bench: all
	@bench/launch.sh
	@bench/burst.sh
	@bench/agent_idle.sh

# Ten minutes of churn on 500 tasks (bench/soak.sh); not part of `make test`.
soak: all
	@bench/soak.sh

# Installation (docs/operations.md, "Packages"): the binary, a man page per
# command group generated from the help text, bash completion, systemd units
# and their defaults. DESTDIR stages it (make deb does).
PREFIX  ?= /usr/local
DESTDIR ?=
SYSTEMD_UNIT_DIR ?= $(PREFIX)/lib/systemd/system
SYSCONF_DIR ?= /etc

man: $(BUILD)/berth scripts/man.sh
	@scripts/man.sh $(BUILD)/berth $(BUILD)/man

install: $(BUILD)/berth man
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(SYSTEMD_UNIT_DIR) \
		$(DESTDIR)$(SYSCONF_DIR)/default $(DESTDIR)$(PREFIX)/share/doc/berth
	install -m 0755 $(BUILD)/berth $(DESTDIR)$(PREFIX)/bin/berth
	for p in $(BUILD)/man/*.1; do gzip -9n -c $$p >$(DESTDIR)$(PREFIX)/share/man/man1/$$(basename $$p).gz; done
	install -m 0644 dist/bash-completion/berth $(DESTDIR)$(PREFIX)/share/bash-completion/completions/berth
	for u in dist/systemd/*.service; do sed 's|/usr/bin/berth|$(PREFIX)/bin/berth|' $$u >$(DESTDIR)$(SYSTEMD_UNIT_DIR)/$$(basename $$u); done
	for d in dist/default/*; do [ -e $(DESTDIR)$(SYSCONF_DIR)/default/$$(basename $$d) ] || install -m 0644 $$d $(DESTDIR)$(SYSCONF_DIR)/default/; done
	install -m 0644 README.md docs/*.md $(DESTDIR)$(PREFIX)/share/doc/berth/

# A Debian package of this build: build/berth_VERSION_ARCH.deb.
deb: $(BUILD)/berth
	@scripts/deb.sh $(BUILD)

format:
	clang-format -i $$(find src tests fuzz bench -name '*.[ch]')

# Layer rules and formatting (scripts/check.sh).
check:
	@scripts/check.sh

clean:
	rm -rf build build-asan build-fuzz

-include $(LIB_OBJ:.o=.d) $(BUILD)/src/berth.d
