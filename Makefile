# pard — the two commands of the README, and what they stand on.
#
#   make demo    install what is missing, build, run the demonstration
#   make check   install what is missing, build with -Werror, run every test
#                in the plain, ASan+UBSan and TSan builds
#   make figures regenerate the guide's figures (docs/guide/figures)
#
# Builds go to build/<flavour>. Nothing here needs a network but Debian's.

NPROC   := $(shell nproc 2>/dev/null || echo 2)
CMAKE   ?= cmake
BUILD   ?= build
# Debian packages the build, the tests and the demo need. shared-mime-info
# puts XML files in /usr/share/mime, which the XML case study reads (the
# demo, and the docs' commands that `make check` runs).
DEPS    := build-essential cmake pkg-config libuv1-dev libmsgpack-dev libcriterion-dev \
           clang libclang-rt-14-dev libexpat1-dev valgrind groff-base man-db shared-mime-info

.PHONY: all deps build demo check check-plain check-asan check-tsan format clean

all: build

# Install only what is missing; apt-get update first, and only then.
deps:
	@missing=""; \
	for p in $(DEPS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  if [ "$$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	else \
	  echo "make deps: everything is installed"; \
	fi

$(BUILD)/release/CMakeCache.txt:
	$(CMAKE) -S . -B $(BUILD)/release -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPARD_BUILD_TESTS=OFF

build: deps $(BUILD)/release/CMakeCache.txt
	$(CMAKE) --build $(BUILD)/release -j$(NPROC)

demo: build
	@sh clients/examples/demo.sh $(BUILD)/release

# One flavour: configure with -Werror, build, run ctest.
define run_suite
	$(CMAKE) -S . -B $(BUILD)/$(1) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPARD_WERROR=ON $(2)
	$(CMAKE) --build $(BUILD)/$(1) -j$(NPROC)
	cd $(BUILD)/$(1) && ctest --output-on-failure --timeout 900
endef

check: deps
	$(MAKE) --no-print-directory check-plain check-asan check-tsan

check-plain:
	$(call run_suite,check,)

check-asan:
	$(call run_suite,asan,-DPARD_SANITIZE=address$(,)undefined)

check-tsan:
	$(call run_suite,tsan,-DPARD_SANITIZE=thread)

, := ,

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD)

# pard against its peers (bench/peers, docs/performance.md): Python's
# multiprocessing and concurrent.futures, joblib, GNU parallel and ZeroMQ,
# each ratio measured in one run. The peers are not needed by `make check`,
# so they have their own list, installed the way `deps` installs DEPS.
PEER_DEPS := python3 python3-joblib parallel libzmq3-dev gnuplot-nox

# The guide's figures (docs/guide/figures): data, tables and SVG plots,
# regenerated in one go from the commands the chapters show. Run it on a
# quiet machine; it needs gnuplot, installed the way `deps` installs DEPS.
.PHONY: figures
figures: build
	@$(MAKE) --no-print-directory deps DEPS="gnuplot-nox"
	sh docs/guide/figures/make-figures.sh $(BUILD)/release

.PHONY: bench-peers
bench-peers: build
	@$(MAKE) --no-print-directory deps DEPS="$(PEER_DEPS)"
	sh bench/peers/run.sh $(BUILD)/release
