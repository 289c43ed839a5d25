/* Fully connected layers on CUDA through cuBLASLt: linear_fwd with the bias
 * added in the gemm's epilogue (CUBLASLT_EPILOGUE_BIAS), linear_bwd_w with
 * the bias gradient reduced in the weight-gradient gemm's epilogue
 * (CUBLASLT_EPILOGUE_BGRADB). Each saves a separate pass over a
 * (rows, out) tensor per layer and direction.
 *
 * Mapping (the row-major to column-major swap of cuda_backend.c): a
 * row-major (r, c) matrix is the column-major (c, r) matrix of its
 * transpose. Forward, y^T (out, rows) = W (out, in) x^T (in, rows): A is
 * the weight seen column-major as (in, out), ld in, transposed (TRANSA = T);
 * B is x seen as (in, rows), ld in, not transposed; D is y seen as (out,
 * rows), ld out. The bias has one value per row of D (m = out), which is
 * what EPILOGUE_BIAS broadcasts. Weight gradient, dW^T (in, out) = x^T (in,
 * rows) dy (rows, out): A is x as (in, rows), not transposed; B is dy seen
 * as (out, rows), ld out, transposed (TRANSB = T); C = D is dW seen as (in,
 * out), ld in, with beta = 1 (gradients accumulate). The bias gradient is
 * the sum of op(B) over k (= rows) per column of D (n = out), which is
 * EPILOGUE_BGRADB. cuBLASLt writes that bias gradient (it does not
 * accumulate), so it goes into backend scratch and one axpy adds it to db:
 * an out-float pass, against the rows x out pass of a separate reduction.
 *
 * Precision: A, B, C, D and the bias stay fp32; the compute type is the
 * backend's (TF32 tensor cores for fp32, FAST_16BF / FAST_16F for bf16 /
 * fp16, plain fp32 when DLT_CUDA_STRICT_FP32=1), as gemm picks it, with fp32
 * scale type.
 *
 * Plans: a matmul descriptor, three layouts and the heuristic's first
 * algorithm are kept per shape (kind, rows, in, out, precision, pointer
 * alignments; the heuristic assumes 256-byte aligned operands unless told,
 * and parameters in the arena are only 4-byte aligned in general). They live
 * in a fixed table allocated with the backend, built on the first call of a
 * shape (no allocation: the semi-opaque descriptors are initialised in
 * place) and replaced least-recently-used when more shapes than slots
 * appear; a step after the first finds every plan. The workspace comes from
 * the backend's scratch. A shape for which cuBLASLt offers no algorithm with
 * the epilogue (or whose matmul reports NOT_SUPPORTED) is remembered as
 * such and runs as cuBLAS gemm + the bias kernels of cuda_elem.cu, as does
 * every call without a bias. DLT_CUDA_LT=0 forces that path everywhere
 * (A/B timing, or ruling cuBLASLt out when a GPU check fails).
 *
 * GELU is not fused: cuBLASLt's GELU epilogues use the tanh approximation
 * while dltrain's GELU is the exact erf form (torch.nn.GELU()); see
 * docs/decisions.md. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cublasLt.h>

#include "core/cuda/cuda_internal.h"

/* Plans kept at once: a BERT step needs about 16 (4 shapes per block, both
 * directions, plus heads and the gathered decoder's few row buckets). */
#define LT_PLANS 128
/* cuBLAS's recommended workspace: 32 MiB on Hopper and newer, 4 MiB before. */
#define LT_WS_HOPPER ((size_t)32 << 20)
#define LT_WS_OLDER ((size_t)4 << 20)
/* Scratch offsets are kept at cudaMalloc's alignment. */
#define LT_ALIGN 256

enum { LT_FWD, LT_BWD_W };

typedef struct {
    int kind;                      /* LT_FWD or LT_BWD_W */
    int rows, in, out;
    int prec;                      /* dlt_cuda_prec */
    uint16_t align[4];             /* bytes: A, B, C/D, bias pointers */
} lt_key;

typedef struct {
    lt_key key;
    int used;                      /* slot holds a plan */
    int fused;                     /* 1: cuBLASLt with the epilogue; 0: gemm + bias kernel */
    uint64_t last;                 /* clock of the last use, for replacement */
    cublasLtMatmulDescOpaque_t op;
    cublasLtMatrixLayoutOpaque_t la, lb, ld;
    cublasLtMatmulAlgo_t algo;
    size_t ws;                     /* workspace bytes the algorithm needs */
} lt_plan;

struct dlt_cuda_lt {
    cublasLtHandle_t handle;
    size_t ws_max;
    int disabled;                  /* DLT_CUDA_LT=0 */
    uint64_t clock;
    long long fused, unfused;      /* calls with a bias, by path (dlt_cuda_lt_stats) */
    lt_plan plans[LT_PLANS];
};

/* Contract: cuda_internal.h. */
dlt_status dlt_cuda_lt_init(dlt_cuda_impl *impl)
{
    dlt_cuda_lt *lt = calloc(1, sizeof *lt);
    if (!lt) return DLT_ERR(DLT_ERR_NOMEM, "cuda backend: out of memory (cuBLASLt plans)");
    impl->lt = lt;
    CUBLAS_CHECK(cublasLtCreate(&lt->handle));
    lt->ws_max = impl->prop.major >= 9 ? LT_WS_HOPPER : LT_WS_OLDER;
    const char *env = getenv("DLT_CUDA_LT");
    lt->disabled = env && !strcmp(env, "0");
    return DLT_OK;
}

/* Contract: cuda_internal.h. */
void dlt_cuda_lt_free(dlt_cuda_impl *impl)
{
    if (!impl->lt) return;
    if (impl->lt->handle) cublasLtDestroy(impl->lt->handle);
    free(impl->lt);
    impl->lt = NULL;
}

/* Largest power of two dividing the address, at most LT_ALIGN. */
static uint16_t align_of(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    uint16_t r = 1;
    while (r < LT_ALIGN && !(a & r)) r <<= 1;
    return r;
}

/* cuBLASLt compute type of a precision (gemm's choice; STRICT is plain fp32,
 * which cuBLASLt never runs on TF32 tensor cores). */
static cublasComputeType_t lt_compute(int prec)
{
    switch (prec) {
    case DLT_CUDA_PREC_STRICT: return CUBLAS_COMPUTE_32F;
    case DLT_CUDA_PREC_BF16: return CUBLAS_COMPUTE_32F_FAST_16BF;
    case DLT_CUDA_PREC_FP16: return CUBLAS_COMPUTE_32F_FAST_16F;
    default: return CUBLAS_COMPUTE_32F_FAST_TF32;
    }
}

static dlt_status set_desc(cublasLtMatmulDesc_t op, cublasLtMatmulDescAttributes_t attr,
                           const void *v, size_t size)
{
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, attr, v, size));
    return DLT_OK;
}

/* Fills plan p for key k: descriptor, layouts, and the heuristic's best
 * algorithm for the epilogue with bias (vector) pointer `bias`. No
 * algorithm leaves p->fused = 0 (the caller falls back); other failures
 * are errors. */
static dlt_status plan_build(dlt_cuda_lt *lt, lt_plan *p, const lt_key *k, const void *bias)
{
    p->fused = 0;
    p->ws = 0;
    const int fwd = k->kind == LT_FWD;
    const int32_t ta = fwd ? CUBLAS_OP_T : CUBLAS_OP_N, tb = fwd ? CUBLAS_OP_N : CUBLAS_OP_T;
    const uint32_t epi = fwd ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_BGRADB;
    CUBLAS_CHECK(cublasLtMatmulDescInit(&p->op, lt_compute(k->prec), CUDA_R_32F));
    DLT_CHECK(set_desc(&p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    DLT_CHECK(set_desc(&p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    DLT_CHECK(set_desc(&p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    DLT_CHECK(set_desc(&p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    /* column-major (rows, cols, ld) of each operand; see the file comment */
    if (fwd) {
        CUBLAS_CHECK(cublasLtMatrixLayoutInit(&p->la, CUDA_R_32F, k->in, k->out, k->in));
        CUBLAS_CHECK(cublasLtMatrixLayoutInit(&p->lb, CUDA_R_32F, k->in, k->rows, k->in));
        CUBLAS_CHECK(cublasLtMatrixLayoutInit(&p->ld, CUDA_R_32F, k->out, k->rows, k->out));
    } else {
        CUBLAS_CHECK(cublasLtMatrixLayoutInit(&p->la, CUDA_R_32F, k->in, k->rows, k->in));
        CUBLAS_CHECK(cublasLtMatrixLayoutInit(&p->lb, CUDA_R_32F, k->out, k->rows, k->out));
        CUBLAS_CHECK(cublasLtMatrixLayoutInit(&p->ld, CUDA_R_32F, k->in, k->out, k->in));
    }
    cublasLtMatmulPreferenceOpaque_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceInit(&pref));
    const uint64_t ws_max = lt->ws_max;
    const uint32_t al[4] = { k->align[0], k->align[1], k->align[2], k->align[2] };
    const cublasLtMatmulPreferenceAttributes_t al_attr[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES
    };
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        &pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_max, sizeof ws_max));
    for (int i = 0; i < 4; i++)
        CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(&pref, al_attr[i], &al[i], sizeof al[i]));
    cublasLtMatmulHeuristicResult_t res;
    memset(&res, 0, sizeof res);
    int found = 0;
    cublasStatus_t e = cublasLtMatmulAlgoGetHeuristic(lt->handle, &p->op, &p->la, &p->lb, &p->ld,
                                                      &p->ld, &pref, 1, &res, &found);
    if (e == CUBLAS_STATUS_NOT_SUPPORTED || (e == CUBLAS_STATUS_SUCCESS && found < 1))
        return DLT_OK; /* no kernel with this epilogue here: gemm + bias kernel */
    CUBLAS_CHECK(e);
    if (res.state != CUBLAS_STATUS_SUCCESS) return DLT_OK;
    p->algo = res.algo;
    p->ws = res.workspaceSize;
    p->fused = 1;
    return DLT_OK;
}

/* The plan of key k, built on first use (bias: the bias pointer its
 * heuristic sees); NULL with DLT_OK when the shape runs unfused. */
static dlt_status plan_get(dlt_cuda_lt *lt, const lt_key *k, const void *bias, lt_plan **out)
{
    *out = NULL;
    lt_plan *victim = &lt->plans[0];
    lt->clock++;
    for (int i = 0; i < LT_PLANS; i++) {
        lt_plan *p = &lt->plans[i];
        if (p->used && !memcmp(&p->key, k, sizeof *k)) {
            p->last = lt->clock;
            if (p->fused) *out = p;
            return DLT_OK;
        }
        if (!p->used) {
            if (victim->used) victim = p;
        } else if (victim->used && p->last < victim->last) {
            victim = p;
        }
    }
    memset(victim, 0, sizeof *victim);
    victim->key = *k;
    dlt_status st = plan_build(lt, victim, k, bias);
    if (st != DLT_OK) return st; /* slot stays unused: the next call retries and fails again */
    victim->used = 1;
    victim->last = lt->clock;
    if (victim->fused) *out = victim;
    return DLT_OK;
}

/* Key of a call; zeroed first so that memcmp sees no padding garbage. */
static lt_key make_key(int kind, int rows, int in, int out, int prec, const void *a,
                       const void *b, const void *d, const void *bias)
{
    lt_key k;
    memset(&k, 0, sizeof k);
    k.kind = kind;
    k.rows = rows;
    k.in = in;
    k.out = out;
    k.prec = prec;
    k.align[0] = align_of(a);
    k.align[1] = align_of(b);
    k.align[2] = align_of(d);
    k.align[3] = align_of(bias);
    return k;
}

static size_t round_up(size_t v) { return (v + LT_ALIGN - 1) / LT_ALIGN * LT_ALIGN; }

/* Runs plan p: D = alpha op(A) op(B) + beta D with the plan's epilogue on
 * bias (input or output vector). *unsupported = 1 (and nothing queued) when
 * cuBLASLt refuses the plan at run time. */
static dlt_status plan_run(dlt_backend *be, lt_plan *p, const float *a, const float *b,
                           float beta, float *d, const void *bias, void *ws, int *unsupported)
{
    dlt_cuda_impl *impl = dlt_cuda_of(be);
    const float alpha = 1.0f;
    *unsupported = 0;
    DLT_CHECK(set_desc(&p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    cublasStatus_t e = cublasLtMatmul(impl->lt->handle, &p->op, &alpha, a, &p->la, b, &p->lb,
                                      &beta, d, &p->ld, d, &p->ld, &p->algo, ws, p->ws,
                                      impl->stream);
    if (e == CUBLAS_STATUS_NOT_SUPPORTED) {
        p->fused = 0;
        *unsupported = 1;
        return DLT_OK;
    }
    CUBLAS_CHECK(e);
    return DLT_OK;
}

static dlt_status check_sizes(const char *op, int rows, int in, int out)
{
    if (rows < 0 || in < 0 || out < 0)
        return DLT_ERR(DLT_ERR_INVALID, "%s: negative size rows=%d in=%d out=%d", op, rows, in,
                       out);
    return DLT_OK;
}

/* Contract: backend.h linear_fwd. */
dlt_status dlt_cuda_linear_fwd(dlt_backend *be, int rows, int in, int out, const float *x,
                               const float *w, const float *b, float *y)
{
    DLT_CHECK(check_sizes("linear_fwd", rows, in, out));
    if (rows == 0 || out == 0) return DLT_OK;
    CUDA_ENTER(be);
    dlt_cuda_impl *impl = dlt_cuda_of(be);
    if (b && in > 0 && !impl->lt->disabled) {
        const lt_key k = make_key(LT_FWD, rows, in, out, impl->prec, w, x, y, b);
        lt_plan *p;
        DLT_CHECK(plan_get(impl->lt, &k, b, &p));
        if (p) {
            void *ws = NULL;
            if (p->ws) DLT_CHECK(dlt_cuda_scratch(be, p->ws, &ws));
            int unsupported;
            DLT_CHECK(plan_run(be, p, w, x, 0.0f, y, b, ws, &unsupported));
            if (!unsupported) {
                impl->lt->fused++;
                return DLT_OK;
            }
        }
    }
    if (b) impl->lt->unfused++;
    /* y = x W^T (zeros when in = 0, which gemm's lda check would refuse), then + b */
    if (in == 0) DLT_CHECK(dlt_cuda_fill(be, y, (size_t)rows * out, 0.0f));
    else DLT_CHECK(dlt_cuda_gemm(be, 0, 1, rows, out, in, 1.0f, x, in, w, in, 0.0f, y, out));
    return b ? dlt_cuda_bias_add(be, rows, out, 1, b, y) : DLT_OK;
}

/* Contract: backend.h linear_bwd_w. */
dlt_status dlt_cuda_linear_bwd_w(dlt_backend *be, int rows, int in, int out, const float *x,
                                 const float *dy, float *dw, float *db)
{
    DLT_CHECK(check_sizes("linear_bwd_w", rows, in, out));
    if (rows == 0 || out == 0) return DLT_OK;
    CUDA_ENTER(be);
    dlt_cuda_impl *impl = dlt_cuda_of(be);
    if (db && in > 0 && !impl->lt->disabled) {
        /* the bias gradient lands in scratch [0, out) and the workspace
         * follows it; get the first part now so the heuristic sees a real
         * (256-byte aligned) output pointer */
        const size_t db_bytes = round_up((size_t)out * sizeof(float));
        void *scr;
        DLT_CHECK(dlt_cuda_scratch(be, db_bytes, &scr));
        const lt_key k = make_key(LT_BWD_W, rows, in, out, impl->prec, x, dy, dw, scr);
        lt_plan *p;
        DLT_CHECK(plan_get(impl->lt, &k, scr, &p));
        if (p) {
            DLT_CHECK(dlt_cuda_scratch(be, db_bytes + p->ws, &scr));
            float *dbtmp = scr;   /* (out) */
            int unsupported;
            DLT_CHECK(plan_run(be, p, x, dy, 1.0f, dw, dbtmp, (char *)scr + db_bytes,
                               &unsupported));
            if (!unsupported) {
                impl->lt->fused++;
                return dlt_cuda_axpy(be, (size_t)out, 1.0f, dbtmp, db);
            }
        }
    }
    if (db) impl->lt->unfused++;
    if (in > 0)
        DLT_CHECK(dlt_cuda_gemm(be, 1, 0, out, in, rows, 1.0f, dy, out, x, in, 1.0f, dw, in));
    return db ? dlt_cuda_bias_grad(be, rows, out, 1, dy, db) : DLT_OK;
}

/* Contract: cuda_internal.h (exported). */
int dlt_cuda_lt_stats(dlt_backend *be, long long *fused, long long *unfused)
{
    if (!be || dlt_cuda_device(be) < 0 || !dlt_cuda_of(be)->lt) return -1;
    *fused = dlt_cuda_of(be)->lt->fused;
    *unfused = dlt_cuda_of(be)->lt->unfused;
    return 0;
}
