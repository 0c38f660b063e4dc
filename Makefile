# DeepFusedMoE build. Knobs: DEBUG=1, ASAN=1 (ASan+UBSan), TSAN=1, WERROR=1,
# CUDA=0/1 (default: 1 when nvcc is found), ARCH (default sm_90a), CC, BUILD.
#
#   make            library (shared + static), demo, tests
#   make test       run the C test suite (CPU backend)
#   make demo       run the main job

CC      ?= gcc
NVCC    ?= nvcc
BUILD   ?= build
ARCH    ?= sm_90a
CUDA    ?= $(if $(shell command -v $(NVCC) 2>/dev/null),1,0)

CFLAGS  := -std=c11 -fPIC -Wall -Wextra -Wshadow -Wno-unused-parameter -Iinclude -Isrc -pthread
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

LIB_C   := $(wildcard src/*.c src/common/*.c src/cpu/*.c)
LIB_OBJ := $(LIB_C:%.c=$(BUILD)/%.o)

ifeq ($(CUDA),1)
  CUDA_HOME ?= $(patsubst %/bin/,%,$(dir $(shell command -v $(NVCC))))
  ARCH_NUM  := $(patsubst sm_%,%,$(ARCH))
  NVFLAGS   := -std=c++17 -O3 -g -lineinfo -Xcompiler -fPIC -Iinclude -Isrc \
               -gencode=arch=compute_$(ARCH_NUM),code=$(ARCH) -DDFM_WITH_CUDA \
               -Xptxas -warn-spills
  ifeq ($(WERROR),1)
    NVFLAGS += -Werror all-warnings
  endif
  CFLAGS    += -DDFM_WITH_CUDA -I$(CUDA_HOME)/include
  CU_SRC    := $(wildcard src/cuda/*.cu)
  LIB_OBJ   += $(CU_SRC:%.cu=$(BUILD)/%.o)
  LDLIBS    += -L$(CUDA_HOME)/lib64 -lcudart -lnccl -lstdc++
endif

TEST_C    := $(wildcard tests/test_*.c)
TEST_BIN  := $(TEST_C:tests/%.c=$(BUILD)/tests/%)
TEST_LIB  := $(filter-out $(TEST_C),$(wildcard tests/*.c))
TEST_LIBO := $(TEST_LIB:%.c=$(BUILD)/%.o)
# Helpers shared by several test programs (oracle, harness): tests/*.c that
# are not test_*.c and not fuzz targets.
TEST_LIBO := $(filter-out $(BUILD)/tests/fuzz_%.o,$(TEST_LIBO))

DEMO      := $(BUILD)/dfm_demo

.PHONY: all lib test demo clean
all: lib $(DEMO) $(TEST_BIN)
lib: $(BUILD)/libdfm.so $(BUILD)/libdfm.a

$(BUILD)/%.o: %.c $(wildcard include/*.h src/*.h src/common/*.h src/cpu/*.h tests/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/%.o: %.cu $(wildcard include/*.h src/*.h src/common/*.h src/cuda/*.h src/cuda/*.cuh)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c $< -o $@

$(BUILD)/libdfm.so: $(LIB_OBJ)
	$(CC) -shared $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/libdfm.a: $(LIB_OBJ)
	ar rcs $@ $^

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TEST_LIBO) $(BUILD)/libdfm.a
	$(CC) $(LDFLAGS) -o $@ $< $(TEST_LIBO) $(BUILD)/libdfm.a $(LDLIBS)

$(DEMO): $(BUILD)/examples/dfm_demo.o $(BUILD)/libdfm.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

test: $(TEST_BIN)
	@set -e; for t in $(TEST_BIN); do echo "== $$t"; $$t; done

demo: $(DEMO)
	$(DEMO)

clean:
	rm -rf $(BUILD)
