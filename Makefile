# Thin wrapper over CMake/CTest: every target installs missing packages, configures and builds first.
BUILD_DIR ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc)

.PHONY: run test bench fuzz build deps configure clean

deps:
	@bash scripts/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

# The main job on a built-in default.
run: build
	@bash scripts/run-default.sh $(BUILD_DIR)/deltatune

test: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

bench: build
	@bash bench/run.sh $(BUILD_DIR)

# libFuzzer over the safetensors parser (clang, separate build tree). FUZZ_SECONDS bounds the run.
FUZZ_SECONDS ?= 60
fuzz: deps
	@cmake -S . -B $(BUILD_DIR)-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_CXX_COMPILER=clang++ -DDELTATUNE_FUZZ=ON >/dev/null
	@cmake --build $(BUILD_DIR)-fuzz -j $(JOBS) --target fuzz_safetensors
	@mkdir -p $(BUILD_DIR)-fuzz/corpus
	@$(BUILD_DIR)-fuzz/fuzz_safetensors $(BUILD_DIR)-fuzz/corpus tests/io/data/safetensors \
	  -dict=tests/io/fuzz_safetensors.dict -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -print_final_stats=1

clean:
	rm -rf $(BUILD_DIR) $(BUILD_DIR)-fuzz
