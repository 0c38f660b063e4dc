# DeepFusedMoE build.
#
#   make            library (build/libdfm.so, build/libdfm.a), demo, tests (+ bench/ with CUDA)
#   make test       run the C test programs of one build (TEST_ARGS, TEST_ARGS_<name> passed on)
#   make demo       build and run the main job (DEMO_ARGS passed on)
#   make check      the whole CI (what .ci/run runs): -Werror builds with and without
#                   CUDA, the tests and the demo, ASan+UBSan, TSan, a bounded libFuzzer
#                   run, the Python tests; each step is a target of its own (check-*)
#   make fuzz       build the libFuzzer targets with clang (build-fuzz/) and run them
#   make clean
#
# Knobs: CUDA=0/1 (default 1 when nvcc is found and src/cuda/*.cu exist), ARCH
# (default sm_90a), DEBUG=1, ASAN=1 (ASan+UBSan), TSAN=1, WERROR=1, BUILD (default
# build), CC, NVCC, CLANG, PYTHON, FUZZ_TIME (seconds, default 60), TEST_WRAP,
# DEMO_WRAP (a command to run the tests / the demo under).
#
# Give each configuration its own BUILD folder (make check uses build-werror,
# build-cuda, build-asan, build-tsan, build-fuzz); inside one folder a change of
# knobs is noticed ($(BUILD)/.flags) and everything is rebuilt.

ifeq ($(origin CC),default)
  CC    := gcc
endif
NVCC    ?= nvcc
BUILD   ?= build
ARCH    ?= sm_90a
NVCC_PATH := $(shell command -v $(NVCC) 2>/dev/null)
CU_SRC    := $(wildcard src/cuda/*.cu)
# CUDA defaults to on when nvcc is found and the CUDA backend has sources.
CUDA    ?= $(if $(and $(NVCC_PATH),$(CU_SRC)),1,0)
NPROC   := $(shell nproc 2>/dev/null || echo 2)

CFLAGS  := -std=c11 -fPIC -Wall -Wextra -Wshadow -Wno-unused-parameter -Iinclude -Isrc -pthread \
           -MMD -MP
LDLIBS  := -pthread -lm -lrt
ifeq ($(DEBUG),1)
  CFLAGS += -O0 -g
else
  CFLAGS += -O2 -g
endif
ifeq ($(WERROR),1)
  CFLAGS += -Werror
endif
ifeq ($(ASAN),1)
  CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
endif
ifeq ($(TSAN),1)
  CFLAGS  += -fsanitize=thread
  LDFLAGS += -fsanitize=thread
endif
# libFuzzer build (clang only): the library and helpers are instrumented, the
# fuzz targets link the fuzzer's main.
ifeq ($(FUZZ),1)
  CFLAGS  += -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
             -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
endif

LIB_C   := $(wildcard src/*.c src/common/*.c src/cpu/*.c)
LIB_OBJ := $(LIB_C:%.c=$(BUILD)/%.o)

ifeq ($(CUDA),1)
  ifeq ($(NVCC_PATH),)
    $(error CUDA=1 but $(NVCC) was not found; use CUDA=0 or NVCC=/path/to/nvcc)
  endif
  CUDA_HOME ?= $(patsubst %/bin/,%,$(dir $(NVCC_PATH)))
  ARCH_NUM  := $(patsubst sm_%,%,$(ARCH))
  NVFLAGS   := -std=c++17 -O3 -g -lineinfo -Xcompiler -fPIC -Iinclude -Isrc \
               -gencode=arch=compute_$(ARCH_NUM),code=$(ARCH) -DDFM_WITH_CUDA \
               -Xptxas -warn-spills -MMD -MP
  ifeq ($(WERROR),1)
    NVFLAGS += -Werror all-warnings
  endif
  CFLAGS    += -DDFM_WITH_CUDA -I$(CUDA_HOME)/include
  LIB_OBJ   += $(CU_SRC:%.cu=$(BUILD)/%.o)
  # RUNPATH (not RPATH), so LD_LIBRARY_PATH (torch's newer NCCL) still wins.
  LDLIBS    += -L$(CUDA_HOME)/lib64 -Wl,--enable-new-dtags,-rpath,$(CUDA_HOME)/lib64 \
               -lcudart -lnccl -lstdc++
endif

TEST_C    := $(wildcard tests/test_*.c)
# tests/test_*.cu: host code of the CUDA backend checked on the CPU (CUDA=1 only)
TEST_CU   := $(if $(filter 1,$(CUDA)),$(wildcard tests/test_*.cu))
TEST_BIN  := $(TEST_C:tests/%.c=$(BUILD)/tests/%) $(TEST_CU:tests/%.cu=$(BUILD)/tests/%)
FUZZ_C    := $(wildcard tests/fuzz_*.c)
FUZZ_BIN  := $(FUZZ_C:tests/%.c=$(BUILD)/tests/%)
# Helpers shared by several test programs (oracle, harness): tests/*.c that
# are not test_*.c and not fuzz targets.
TEST_LIB  := $(filter-out $(TEST_C) $(FUZZ_C),$(wildcard tests/*.c))
TEST_LIBO := $(TEST_LIB:%.c=$(BUILD)/%.o)

DEMO      := $(BUILD)/dfm_demo
# Benchmark drivers (bench/*.cu, GPU only): built with CUDA=1 as $(BUILD)/bench/<name>.
BENCH_CU  := $(wildcard bench/*.cu)
BENCH_BIN := $(if $(filter 1,$(CUDA)),$(BENCH_CU:bench/%.cu=$(BUILD)/bench/%))
DEMO_ARGS ?=
TEST_ARGS ?=
# A command the test programs / the demo run under (e.g. valgrind, setarch -R).
TEST_WRAP ?=
DEMO_WRAP ?=

# Every object depends on this file, rewritten only when the flags change.
FLAGS_STAMP := $(BUILD)/.flags
FLAGS_NOW   := $(CC) $(CFLAGS) | $(NVCC) $(NVFLAGS) | $(LDFLAGS) $(LDLIBS)

.SECONDARY:
.PHONY: all lib test demo clean check fuzz fuzz-build FORCE \
        check-werror check-cuda check-asan check-tsan check-fuzz check-python
all: lib $(DEMO) $(TEST_BIN) $(BENCH_BIN)
lib: $(BUILD)/libdfm.so $(BUILD)/libdfm.a

$(FLAGS_STAMP): FORCE
	@mkdir -p $(BUILD)
	@echo '$(FLAGS_NOW)' | cmp -s - $@ || echo '$(FLAGS_NOW)' > $@

$(BUILD)/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# With WERROR=1 a kernel whose wgmma ptxas serializes for want of registers
# (info C7511, not a warning to nvcc) fails the build: in the fused kernel it
# costs microseconds a call (docs/PERF_NOTES.md, twenty-sixth session).
$(BUILD)/%.o: %.cu $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c $< -o $@ 2> $@.log || { cat $@.log >&2; rm -f $@.log; exit 1; }
	@cat $@.log >&2; if [ "$(WERROR)" = 1 ] && grep -q C7511 $@.log; then \
	  echo "$<: ptxas serialized wgmma (C7511, above): WERROR=1 fails on it" >&2; rm -f $@ $@.log; exit 1; fi; \
	rm -f $@.log

$(BUILD)/libdfm.so: $(LIB_OBJ)
	$(CC) -shared $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/libdfm.a: $(LIB_OBJ)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TEST_LIBO) $(BUILD)/libdfm.a
	$(CC) $(LDFLAGS) -o $@ $< $(TEST_LIBO) $(BUILD)/libdfm.a $(LDLIBS)

$(DEMO): $(BUILD)/examples/dfm_demo.o $(BUILD)/libdfm.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BENCH_BIN): $(BUILD)/bench/%: $(BUILD)/bench/%.o $(BUILD)/libdfm.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Runs every test program (with TEST_ARGS, and TEST_ARGS_<name> for one of
# them), then fails if any failed.
test: $(TEST_BIN)
	@failed=; $(foreach t,$(TEST_BIN),\
	  echo "== $(t) $(strip $(TEST_ARGS) $(TEST_ARGS_$(notdir $(t))))"; \
	  $(TEST_WRAP) $(t) $(TEST_ARGS) $(TEST_ARGS_$(notdir $(t))) || failed="$$failed $(t)";) \
	  if [ -n "$$failed" ]; then echo "== FAILED:$$failed"; exit 1; fi

# With CUDA, the demo runs with torch's NCCL (>= 2.28.7) first on the library
# path when python3 has it, and never with NVLink multicast. The lookup: the lib
# folder of nvidia.nccl, else any nvidia/*/lib holding libnccl (CUDA 13 wheels).
define NCCL_LIB_PY
import glob, os, nvidia
libs = [os.path.join(p, "nccl", "lib") for p in nvidia.__path__
        if os.path.isdir(os.path.join(p, "nccl", "lib"))]
libs += [os.path.dirname(f) for p in nvidia.__path__
         for f in sorted(glob.glob(os.path.join(p, "*", "lib", "libnccl.so*")))]
print(libs[0] if libs else "")
endef
export NCCL_LIB_PY
demo: $(DEMO)
ifeq ($(CUDA),1)
	@nccl=$$(python3 -c "$$NCCL_LIB_PY" 2>/dev/null); \
	  p=$$nccl; p=$$p$${LD_LIBRARY_PATH:+$${p:+:}$$LD_LIBRARY_PATH}; \
	  set -x; NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 \
	  LD_LIBRARY_PATH=$$p $(DEMO_WRAP) $(DEMO) $(DEMO_ARGS)
else
	$(DEMO_WRAP) $(DEMO) $(DEMO_ARGS)
endif

clean:
	rm -rf $(BUILD) build build-*

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# ---- fuzzing (CC=clang FUZZ=1; make fuzz sets both) ---------------------------

FUZZ_TIME ?= 60
ifeq ($(FUZZ),1)
$(BUILD)/tests/fuzz_%: $(BUILD)/tests/fuzz_%.o $(TEST_LIBO) $(BUILD)/libdfm.a
	$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $< $(TEST_LIBO) $(BUILD)/libdfm.a $(LDLIBS)

fuzz-build: $(FUZZ_BIN)
fuzz: $(FUZZ_BIN)
	@set -e; for f in $(FUZZ_BIN); do \
	  mkdir -p $$f.corpus; echo "== $$f ($(FUZZ_TIME) s)"; \
	  $$f -max_total_time=$(FUZZ_TIME) -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
	      -artifact_prefix=$$f- $$f.corpus; done
else
CLANG ?= $(firstword $(foreach c,clang clang-14,$(if $(shell command -v $(c) 2>/dev/null),$(c))) clang)
fuzz fuzz-build:
	+$(MAKE) --no-print-directory CC=$(CLANG) FUZZ=1 CUDA=0 BUILD=$(BUILD)-fuzz $@
endif

# ---- continuous integration ---------------------------------------------------
#
# make check runs every step in order and stops at the first failure; each
# step is also a target of its own. Steps that need a tool that is missing
# (nvcc for check-cuda) say so and are skipped; nothing else is.

CHECK_STEPS := check-werror check-cuda check-asan check-tsan check-fuzz check-python
SUBMAKE      = $(MAKE) --no-print-directory $(if $(findstring -j,$(MAKEFLAGS)),,-j$(NPROC))
RUNMAKE     := $(MAKE) --no-print-directory
PYTHON      ?= $(if $(wildcard /usr/bin/python3),/usr/bin/python3,python3)

check:
	@set -e; t0=$$(date +%s); for s in $(CHECK_STEPS); do \
	  t=$$(date +%s); echo "==== $$s"; \
	  $(MAKE) --no-print-directory $$s; \
	  echo "==== $$s: ok, $$(( $$(date +%s) - t )) s"; \
	done; echo "==== make check: all passed in $$(( $$(date +%s) - t0 )) s"

# Warnings as errors, without CUDA: library, demo, tests; run the tests, and
# the demo in its default configuration and in each mode at other rank counts.
DEMO_CHECK_ARGS := '' '-m int8 -r 2 -n 2' '-m bf16 -r 3 -E 6 -K 3 -u 0.2 -n 2' \
                   '-m fp8 -r 1 -E 4 -T 7 -n 2' '-m int8 -r 8 -E 16 -T 5 -n 2'
check-werror:
	+$(SUBMAKE) BUILD=build-werror WERROR=1 CUDA=0 all
	+$(RUNMAKE) BUILD=build-werror WERROR=1 CUDA=0 test
	+@set -e; for a in $(DEMO_CHECK_ARGS); do \
	  $(RUNMAKE) BUILD=build-werror WERROR=1 CUDA=0 demo DEMO_ARGS="$$a"; done

# With CUDA (when nvcc exists): everything compiles and links for sm_90a; the
# tests run their CPU cases (no GPU on the CI machine).
check-cuda:
ifeq ($(NVCC_PATH),)
	@echo "check-cuda: $(NVCC) not found, CUDA build skipped"
else ifeq ($(CU_SRC),)
	@echo "check-cuda: no src/cuda/*.cu yet, CUDA build skipped"
else
	+$(SUBMAKE) BUILD=build-cuda WERROR=1 CUDA=1 all
	+$(RUNMAKE) BUILD=build-cuda WERROR=1 CUDA=1 test
	+$(RUNMAKE) BUILD=build-cuda WERROR=1 CUDA=1 demo DEMO_ARGS='-b cpu'
endif

check-asan:
	+$(SUBMAKE) BUILD=build-asan ASAN=1 WERROR=1 CUDA=0 all
	+ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  $(RUNMAKE) BUILD=build-asan ASAN=1 WERROR=1 CUDA=0 test
	+ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  $(RUNMAKE) BUILD=build-asan ASAN=1 WERROR=1 CUDA=0 demo DEMO_ARGS='-n 1 -w 0'

# TSan: the tests with ranks as threads (test_moe -p threads; the forked-rank
# cases run under ASan). setarch -R keeps TSan working on kernels whose mmap
# randomization is wider than it supports.
SETARCH := $(if $(shell command -v setarch 2>/dev/null),setarch $(shell uname -m) -R,)
check-tsan:
	+$(SUBMAKE) BUILD=build-tsan TSAN=1 WERROR=1 CUDA=0 all
	+TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 $(RUNMAKE) BUILD=build-tsan TSAN=1 \
	  WERROR=1 CUDA=0 test TEST_ARGS_test_moe='-p threads' TEST_WRAP='$(SETARCH)'
	+TSAN_OPTIONS=halt_on_error=1 $(RUNMAKE) BUILD=build-tsan TSAN=1 WERROR=1 CUDA=0 demo \
	  DEMO_ARGS='-n 1 -w 0 -T 8' DEMO_WRAP='$(SETARCH)'

check-fuzz:
ifneq ($(FUZZ_C),)
	+$(MAKE) --no-print-directory BUILD=build fuzz
else
	@echo "check-fuzz: no tests/fuzz_*.c yet"
endif

# The Python package's tests, against build-werror/libdfm.so, with the
# interpreter that has torch (Debian's /usr/bin/python3 in CI).
PYTEST_DIR := $(firstword $(wildcard python/tests tests/python))
check-python:
ifneq ($(PYTEST_DIR),)
	+$(SUBMAKE) BUILD=build-werror WERROR=1 CUDA=0 lib
	DFM_LIBRARY=$(CURDIR)/build-werror/libdfm.so PYTHONPATH=$(CURDIR)/python \
	  $(PYTHON) -m pytest -q $(PYTEST_DIR)
else
	@echo "check-python: no Python tests yet"
endif
