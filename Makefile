# postbox — the commands a newcomer types. CMake does the real work in build/.
#
#   make          build the library, examples and tests
#   make check    build, then run every test
#   make demo     build, then run the examples (postbox at work)
#   make asan     build with address + undefined-behaviour sanitizers and run every test
#   make tsan     build with the thread sanitizer and run the threaded tests
#   make bench    build, then run the benchmark suite against the kernel's queues (< 3 min)
#   make bench-quick  the same, shortened (< 30 s; CI runs it as a smoke test)
#   make bench-spool  build, then measure the durable spool transport (docs/spool.md; ~2 min)
#   make format   reformat the C sources with clang-format
#   make clean    remove the build directories

BUILD    ?= build
JOBS     ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE    ?= cmake
CTEST    ?= ctest
GENERATOR_FLAGS ?=

.PHONY: all build check demo bench bench-quick bench-spool asan tsan format clean tools-check

all: build

tools-check:
	@command -v $(CMAKE) >/dev/null 2>&1 || { echo "postbox: cmake is required (Debian: apt-get install cmake)" >&2; exit 1; }
	@command -v $(CC) >/dev/null 2>&1 || command -v cc >/dev/null 2>&1 || { echo "postbox: a C compiler is required (Debian: apt-get install gcc)" >&2; exit 1; }

$(BUILD)/CMakeCache.txt: | tools-check
	$(CMAKE) -S . -B $(BUILD) $(GENERATOR_FLAGS) $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	$(CMAKE) --build $(BUILD) -j $(JOBS)

check: build
	cd $(BUILD) && $(CTEST) --output-on-failure -j $(JOBS) $(CTEST_FLAGS)

demo: build
	@sh examples/demo.sh $(BUILD)

bench: build
	sh bench/run.sh $(BUILD) full

bench-quick: build
	sh bench/run.sh $(BUILD) quick

bench-spool: build
	$(BUILD)/bench/pbx_bench_spool $(BENCH_SPOOL_ARGS)

asan:
	$(MAKE) check BUILD=build-asan CMAKE_FLAGS="-DPBX_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=Debug"

tsan:
	$(MAKE) check BUILD=build-tsan CMAKE_FLAGS="-DPBX_SANITIZE=thread -DCMAKE_BUILD_TYPE=Debug" CTEST_FLAGS="-L threads"

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-tsan build-clang
