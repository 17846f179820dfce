# C2-Concierge. `make run` and `make test` are all a new machine needs.
BUILD_DIR  ?= build
BUILD_TYPE ?= Release
JOBS       ?= $(shell nproc)
DATA_DIR   ?= ./data
LISTEN     ?= 127.0.0.1:8443

.PHONY: all deps configure build run test bench clean

all: build

deps:
	@bash scripts/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)
	@echo "built $(BUILD_DIR)/bin/keyctl"

run: build
	@bash scripts/run.sh $(BUILD_DIR)/bin/keyctl $(DATA_DIR) $(LISTEN)

test: build
	@ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS) --timeout 600

bench: build
	@BUILD_DIR=$(BUILD_DIR) bash bench/run.sh
	@bash bench/http_bench.sh $(BUILD_DIR)
	@if [ -f bench/pkcs11_bench.sh ]; then bash bench/pkcs11_bench.sh $(BUILD_DIR); fi
	@$(BUILD_DIR)/bin/resign_bench

clean:
	rm -rf $(BUILD_DIR)
