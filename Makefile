# postbox — the commands a newcomer types. CMake does the real work in build/.
#
#   make          build the library, examples and tests
#   make check    build, then run every test
#   make demo     build, then run the examples (postbox at work)
#   make asan     build with address + undefined-behaviour sanitizers and run every test
#   make tsan     build with the thread sanitizer and run the threaded tests
#   make bench    build, then run the benchmark suite against the kernel's queues (< 3 min)
#   make bench-quick  the same, shortened (< 30 s; CI runs it as a smoke test)
#   make torture  the long crash tests: the kill storm with 1 000 kills, mutation 100 000 times
#                 with three seeds (make check runs 100 kills and 10 000 mutations);
#                 TORTURE_RELAY_CLUSTER=1 adds the relay across a three-server NATS cluster
#   make fuzz     build the libFuzzer target with clang and run it (FUZZ_SECONDS, default 60)
#   make bench-sysv   unmodified System V programs on the kernel vs libpostbox-sysv.so (~12 s)
#   make bench-spool  build, then measure the durable spool transport (docs/spool.md; ~2 min)
#   make bench-relay  build, then the relay vs raw nats.c through a local nats-server (docs/relay.md)
#   make bench-python the Python binding against sysv_ipc and multiprocessing.Queue (~3 min)
#   make format   reformat the C sources with clang-format
#   make install  build, then install into PREFIX (default /usr/local; DESTDIR honoured)
#   make clean    remove the build directories

BUILD    ?= build
JOBS     ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE    ?= cmake
CTEST    ?= ctest
GENERATOR_FLAGS ?=

.PHONY: all build check demo bench bench-quick asan tsan format clean tools-check torture fuzz bench-sysv bench-spool

# A bare `make` builds and never installs: `all` is the first target, and said so explicitly in
# case a target is ever added above it.
.DEFAULT_GOAL := all
all: build

# ---- make install (the postbox command's issue) ---------------------------------------------
# The prefix is configured into the build (for the pkg-config file and the CMake package) and
# given to cmake --install; DESTDIR, if set, is prepended to every installed path.
PREFIX ?= /usr/local
.PHONY: install
install: $(BUILD)/CMakeCache.txt
	$(CMAKE) -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	$(CMAKE) --build $(BUILD) -j $(JOBS)
	DESTDIR="$(DESTDIR)" $(CMAKE) --install $(BUILD) --prefix "$(PREFIX)"
# ---- end of make install --------------------------------------------------------------------

tools-check:
	@command -v $(CMAKE) >/dev/null 2>&1 || { echo "postbox: cmake is required (Debian: apt-get install cmake)" >&2; exit 1; }
	@command -v $(CC) >/dev/null 2>&1 || command -v cc >/dev/null 2>&1 || { echo "postbox: a C compiler is required (Debian: apt-get install gcc)" >&2; exit 1; }

$(BUILD)/CMakeCache.txt: | tools-check
	$(CMAKE) -S . -B $(BUILD) $(GENERATOR_FLAGS) $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	$(CMAKE) --build $(BUILD) -j $(JOBS)

# ctest only says "Skipped"; tests/skip_reasons.sh then prints each skipped test's reason.
check: build
	cd $(BUILD) && rm -f ctest-junit.xml && junit= && \
	{ ! $(CTEST) --help | grep -q -- --output-junit || junit="--output-junit ctest-junit.xml"; } && \
	status=0 && $(CTEST) --output-on-failure $$junit -j $(JOBS) $(CTEST_FLAGS) || status=$$?; \
	sh $(CURDIR)/tests/skip_reasons.sh ctest-junit.xml; exit $$status

demo: build
	@sh examples/demo.sh $(BUILD)
	@sh tools/relay/demo.sh $(BUILD)

bench: build
	sh bench/run.sh $(BUILD) full

bench-quick: build
	sh bench/run.sh $(BUILD) quick

# ---- System V drop-in benchmark (bench/sysv/) ----
bench-sysv: build
	$(CMAKE) --build $(BUILD) --target bench-sysv

bench-spool: build
	$(BUILD)/bench/pbx_bench_spool $(BENCH_SPOOL_ARGS)

# ---- relay benchmark (bench/relay/; docs/relay.md): needs nats-server and libnats-dev ----
.PHONY: bench-relay
bench-relay: build
	@test -x $(BUILD)/bench/pbx_bench_relay || { echo "postbox: make bench-relay needs libnats-dev and nats-server (apt-get install nats-server libnats-dev)" >&2; exit 1; }
	$(BUILD)/bench/pbx_bench_relay $(BENCH_RELAY_ARGS)
# ---- the Python binding's benchmark (bench/python/, docs/python.md) ----
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
.PHONY: bench-python
bench-python: build
	PYTHONPATH=$(BUILD)/python $(PYTHON) bench/python/bench.py --preload $(BUILD)/sysv/libpostbox-sysv.so $(BENCH_PYTHON_ARGS)

asan:
	$(MAKE) check BUILD=build-asan CMAKE_FLAGS="-DPBX_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=Debug"

tsan:
	$(MAKE) check BUILD=build-tsan CMAKE_FLAGS="-DPBX_SANITIZE=thread -DCMAKE_BUILD_TYPE=Debug" CTEST_FLAGS="-L threads"

# ---- reliability: torture and fuzz (docs/reliability.md) ----
TORTURE_KILLS ?= 1000
TORTURE_BIAS_CYCLES ?= 400
TORTURE_MUTATIONS ?= 100000
TORTURE_RELAY_CLUSTER ?= 0
TORTURE_RELAY_MSGS ?= 20000
TORTURE_RELAY_KILLS ?= 6
# The long runs are bounded by their work; the harness's per-test limit (110 s, made for
# make check) is lifted to an hour so that a loaded machine slows them without failing them.
TORTURE_TIMEOUT ?= 3600
FUZZ_SECONDS  ?= 60
FUZZ_CC       ?= clang

torture: build
	cd $(BUILD) && PBX_TEST_TIMEOUT=$(TORTURE_TIMEOUT) PBX_STORM_KILLS=$(TORTURE_KILLS) ./test_storm kill_storm_loses_at_most_one_message_per_killed_consumer_and_duplicates_none
	cd $(BUILD) && for seed in 1 2 3; do PBX_TEST_TIMEOUT=$(TORTURE_TIMEOUT) PBX_MUTATE_ITERATIONS=$(TORTURE_MUTATIONS) PBX_MUTATE_SEED=$$seed ./test_mutate random_damage_to_a_live_region_never_crashes_or_hangs_and_is_reported || exit 1; done
	cd $(BUILD) && PBX_TEST_TIMEOUT=$(TORTURE_TIMEOUT) PBX_BIAS_STORM_CYCLES=$(TORTURE_BIAS_CYCLES) ./test_bias a_biased_owner_stopped_at_random_while_intruders_are_killed_at_random_loses_nothing
	@# ---- relay: a three-server JetStream cluster (R3), servers killed in turn (docs/relay.md).
	@# Off by default (TORTURE_RELAY_CLUSTER=1 runs it): it found the replicated DiscardNew stream
	@# losing acknowledged messages, now avoided (docs/relay.md, Back-pressure on a cluster), but
	@# a run can still stall during a failover (docs/relay.md, Limits), which is open work.
	@# Exit 77 (nats-server or libnats-dev missing) is a skip, said on one line.
	@if [ "$(TORTURE_RELAY_CLUSTER)" = 1 ]; then cd $(BUILD) && PBX_TEST_TIMEOUT=$(TORTURE_TIMEOUT) PBX_RELAY_CLUSTER_MSGS=$(TORTURE_RELAY_MSGS) PBX_RELAY_CLUSTER_KILLS=$(TORTURE_RELAY_KILLS) ./test_relay cluster_r3_servers_killed_in_turn_is_exactly_once_in_order; rc=$$?; [ $$rc = 0 ] || [ $$rc = 77 ]; else echo "postbox: relay cluster torture skipped (TORTURE_RELAY_CLUSTER=0; docs/relay.md)"; fi

fuzz:
	@command -v $(FUZZ_CC) >/dev/null 2>&1 || { echo "postbox: make fuzz needs clang with libFuzzer (Debian: apt-get install clang)" >&2; exit 1; }
	@printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void) d; (void) n; return 0; }\n' > /tmp/pbx-fuzz-probe.c
	@$(FUZZ_CC) -fsanitize=fuzzer /tmp/pbx-fuzz-probe.c -o /tmp/pbx-fuzz-probe 2>/dev/null || { rm -f /tmp/pbx-fuzz-probe.c; echo "postbox: $(FUZZ_CC) cannot link -fsanitize=fuzzer: libFuzzer is missing (Debian: apt-get install clang, or libclang-rt-dev for newer LLVM)" >&2; exit 1; }
	@rm -f /tmp/pbx-fuzz-probe.c /tmp/pbx-fuzz-probe
	$(CMAKE) -S fuzz -B build-fuzz -DCMAKE_C_COMPILER=$(FUZZ_CC)
	$(CMAKE) --build build-fuzz -j $(JOBS)
	build-fuzz/fuzz_region -max_total_time=$(FUZZ_SECONDS) -max_len=2048 -timeout=10 fuzz/corpus

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-tsan build-clang build-fuzz build-aarch64 build-musl
