# dltrain build.
#   make            dltrain, dlprep (+ the CUDA backend when nvcc is found)
#   make CUDA=0     without CUDA;  DEBUG=1: -O0 -g;  ASAN=1: address+UB sanitizers
#   make test       unit tests, PyTorch oracle tests, integration tests
#   make test-asan  unit tests under AddressSanitizer and UBSan
#   make demo       install deps, prepare Fashion-MNIST, train the CNN on 2 ranks
#   make bench      CPU benchmarks -> bench/results/
#   make test-gpu   GPU suite (on a machine with a GPU); make bench-gpu; make gpu-pack (scripts/gpu-run.sh)

BUILD ?= build
BIN   ?= bin
CC    ?= gcc
PY    ?= /usr/bin/python3
NP    ?= 2

PKGS := hdf5-serial ompi-c openblas yaml-0.1 zlib
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   := $(shell pkg-config --libs check 2>/dev/null)

WARN   := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
CFLAGS := -std=c11 -D_GNU_SOURCE -I. $(PKG_CFLAGS) -fopenmp -fno-math-errno -MMD -MP $(WARN)
LDLIBS := $(PKG_LIBS) -fopenmp -lm -ldl -lpthread

ifeq ($(DEBUG),1)
  CFLAGS += -O0 -g -DDLT_DEBUG
else
  CFLAGS += -O3 -march=native -g
endif
ifeq ($(ASAN),1)
  CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDLIBS += -fsanitize=address,undefined
endif

# ---- CUDA autodetection ----
CUDA_HOME ?= /usr/local/cuda
NVCC := $(shell command -v nvcc 2>/dev/null || ls $(CUDA_HOME)/bin/nvcc 2>/dev/null)
ifeq ($(NVCC),)
  CUDA ?= 0
else
  CUDA ?= 1
endif
CUDA_ARCH ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=[sm_90,compute_90]
NVFLAGS := -O3 -std=c++17 -I. -MMD -MP -Xcompiler -fPIC,-Wall,-Werror --threads 2 $(CUDA_ARCH)
SAN_FLAGS := -fsanitize=address,undefined
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudnn -lnccl -lcublasLt -lcublas -lcudart -lstdc++ -lm
# libdltcuda.so (dlopen'ed by core/device.c) reports errors with dlt_error();
# exporting the program's status functions makes the library's calls bind to
# the program's copy, so its messages reach the program's dlt_last_error().
LDLIBS += $(foreach s,dlt_error dlt_last_error dlt_clear_error,-Wl,--export-dynamic-symbol=$(s))

# ---- protobuf-c: TensorBoard events (launcher/tboard.proto) and ONNX export
# (onnx.proto from Debian's libonnx-dev), generated at build time ----
PROTOC_C   ?= protoc-c
ONNX_PROTO ?= $(firstword $(wildcard /usr/include/onnx/onnx.proto /usr/lib/python3/dist-packages/onnx/onnx.proto) /usr/include/onnx/onnx.proto)
GEN        := $(BUILD)/gen
PROTO_OBJ  := $(GEN)/tboard.pb-c.o $(GEN)/onnx.pb-c.o
CFLAGS     += -I$(GEN)
LDLIBS     += $(shell pkg-config --libs libprotobuf-c 2>/dev/null || echo -lprotobuf-c)

# ---- sources ----
LIB_SRC  := $(wildcard core/*.c core/cpu/*.c core/layers/*.c comm/*.c data/*.c)
LAUNCH_SRC := $(filter-out launcher/main.c,$(wildcard launcher/*.c))
CUDA_CU  := $(wildcard core/cuda/*.cu)
CUDA_C   := $(wildcard core/cuda/*.c comm/nccl/*.c)
UNIT_SRC := $(wildcard tests/unit/test_*.c)

LIB_OBJ    := $(LIB_SRC:%.c=$(BUILD)/%.o)
LAUNCH_OBJ := $(LAUNCH_SRC:%.c=$(BUILD)/%.o)
CUDA_OBJ   := $(CUDA_CU:%.cu=$(BUILD)/%.o) $(CUDA_C:%.c=$(BUILD)/pic/%.o)
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TEST_COMMON := $(BUILD)/tests/unit/testutil.o

GPU_TEST := $(BUILD)/tests/gpu/test_cuda_ops

TARGETS := $(BIN)/dltrain $(BIN)/dlprep
ifeq ($(CUDA),1)
  TARGETS += $(BIN)/libdltcuda.so $(GPU_TEST)
endif

all: $(TARGETS)
	@echo "dltrain: built $(notdir $(TARGETS)) [CUDA=$(CUDA)$(if $(filter 1,$(CUDA)), nvcc=$(NVCC)) ASAN=$(or $(ASAN),0) DEBUG=$(or $(DEBUG),0)]"

$(BUILD)/libdlt.a: $(LIB_OBJ)
	@mkdir -p $(@D)
	ar rcs $@ $^

$(BUILD)/liblauncher.a: $(LAUNCH_OBJ) $(PROTO_OBJ)
	@mkdir -p $(@D)
	ar rcs $@ $^

$(GEN)/tboard.pb-c.c $(GEN)/tboard.pb-c.h &: launcher/tboard.proto
	@mkdir -p $(GEN)
	$(PROTOC_C) --c_out=$(GEN) -Ilauncher $<

$(GEN)/onnx.pb-c.c $(GEN)/onnx.pb-c.h &: $(ONNX_PROTO)
	@mkdir -p $(GEN)
	$(PROTOC_C) --c_out=$(GEN) -I$(dir $<) $<

# generated code: not ours to keep warning-free
$(GEN)/%.pb-c.o: $(GEN)/%.pb-c.c
	$(CC) $(filter-out -Werror,$(CFLAGS)) -w -c $< -o $@

$(LAUNCH_OBJ) $(BUILD)/launcher/main.o $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit/%.o): | $(GEN)/tboard.pb-c.h $(GEN)/onnx.pb-c.h

$(BIN)/dltrain: $(BUILD)/launcher/main.o $(BUILD)/liblauncher.a $(BUILD)/libdlt.a
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(LDLIBS)

# dlprep preview reads configs with the trainer's loader (liblauncher) and writes PNG (libpng)
$(BIN)/dlprep: $(patsubst %.c,$(BUILD)/%.o,$(wildcard data/dlprep/*.c)) $(BUILD)/liblauncher.a $(BUILD)/libdlt.a
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(LDLIBS) -lpng

$(BIN)/libdltcuda.so: $(CUDA_OBJ) $(BUILD)/pic/core/status.o $(BUILD)/pic/core/backend.o
	@mkdir -p $(@D)
	$(CC) -shared -Wl,--no-undefined -o $@ $^ $(CUDA_LIBS) $(if $(filter 1,$(ASAN)),$(SAN_FLAGS))

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/pic/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -fPIC -I$(CUDA_HOME)/include -c $< -o $@

$(BUILD)/%.o: %.cu
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -c $< -o $@

# ---- tests ----
$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(TEST_COMMON) $(BUILD)/liblauncher.a $(BUILD)/libdlt.a
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(CHECK_LIBS) $(LDLIBS)

$(BUILD)/tests/unit/%.o: tests/unit/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(CHECK_CFLAGS) -c $< -o $@

REF := $(BUILD)/ref
$(REF)/.done: $(wildcard tests/torch/*.py)
	@mkdir -p $(REF)
	for s in tests/torch/gen_*.py; do $(PY) $$s $(REF) || exit 1; done
	@touch $@

export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
export OMPI_MCA_rmaps_base_oversubscribe := 1
export DLT_REF_DIR=$(abspath $(REF))

unit: $(UNIT_BIN) $(REF)/.done
	@set -e; for t in $(UNIT_BIN); do \
	  case $$t in *_mpi) echo "== mpirun -np $(NP) $$t"; ASAN_OPTIONS=detect_leaks=0 CK_FORK=no mpirun -np $(NP) $$t ;; \
	              *) echo "== $$t"; $$t ;; esac; done

integration: all $(BIN)/model_grad
	@set -e; for t in tests/integration/test_*.sh; do echo "== $$t"; BIN=$(abspath $(BIN)) NP=$(NP) sh $$t; done

test: all unit integration
	@echo "make test: all passed"

test-asan:
	$(MAKE) ASAN=1 CUDA=0 BUILD=build-asan BIN=build-asan/bin unit

# CPU-vs-GPU op comparison; links only what it uses (--as-needed), so a GPU
# machine without MPI/HDF5 can run it.
$(GPU_TEST): $(BUILD)/tests/gpu/test_cuda_ops.o $(BUILD)/tests/gpu/test_cuda_seq.o $(BUILD)/tests/gpu/test_cuda_staging.o $(BUILD)/tests/gpu/test_cuda_linear.o $(BUILD)/libdlt.a
	@mkdir -p $(@D)
	$(CC) -o $@ $(filter %.o,$^) -Wl,--as-needed $(BUILD)/libdlt.a $(LDLIBS)

ifeq ($(CUDA),1)
gpu-tests: $(GPU_TEST) $(BIN)/libdltcuda.so
else
gpu-tests:
	@echo "gpu-tests: needs CUDA=1 (nvcc not found or CUDA=0)"; exit 1
endif

# Without a GPU the script exits 77 (skip); make reports that and succeeds
# unless DLT_REQUIRE_GPU=1.
test-gpu: all gpu-tests
	@BUILD=$(BUILD) BIN=$(BIN) sh scripts/test-gpu.sh; rc=$$?; \
	  if [ $$rc -eq 77 ] && [ "$${DLT_REQUIRE_GPU:-0}" != 1 ]; then echo "make test-gpu: skipped (no GPU)"; exit 0; fi; \
	  exit $$rc

# On a machine with a GPU: the benchmark (bench/gpu/run.sh -> bench/results/gpu-<date>.md).
bench-gpu: all
	DLT_BIN=$(abspath $(BIN)) sh bench/gpu/run.sh

# Here, for the lent GPU machine: gpu-carry/dltrain-gpu.tar.xz (scripts/gpu-run.sh).
gpu-pack:
	sh scripts/gpu-run.sh pack

demo:
	sh scripts/install-deps.sh
	$(MAKE) all
	test -f data/fashion-mnist/train-00000.h5 || $(BIN)/dlprep fashion-mnist data/fashion-mnist
	mpirun -np $(NP) $(BIN)/dltrain train configs/cnn_fashion.yaml

# test tools: one program each, used by integration tests
$(BIN)/model_grad: $(BUILD)/tests/tools/model_grad.o $(BUILD)/liblauncher.a $(BUILD)/libdlt.a
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(LDLIBS)

$(BIN)/bench_sgemm: $(BUILD)/bench/sgemm.o
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(LDLIBS)

$(BIN)/bench_allreduce: $(BUILD)/bench/allreduce.o
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(LDLIBS)

bench: all $(BIN)/bench_sgemm $(BIN)/bench_allreduce
	BIN=$(BIN) sh bench/run.sh

# LSTM LM and BERT throughput vs sgemm peak and PyTorch -> bench/results/seq-<date>.md
bench-seq: all $(BIN)/bench_sgemm
	BIN=$(BIN) sh bench/seq.sh

# loader throughput and data-wait fraction -> bench/results/loader-<date>.md
bench-loader: all
	BIN=$(BIN) sh bench/loader.sh

clean:
	rm -rf $(BUILD) build-asan $(BIN)

.PHONY: all unit integration test test-asan test-gpu gpu-tests bench-gpu gpu-pack demo bench bench-loader bench-seq clean
.SECONDARY:

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
