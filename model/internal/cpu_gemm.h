// Single-precision GEMM on the CPU through oneDNN's dnnl_sgemm, when the
// process has it: the oneDNN that LibTorch links (Debian's libdnnl.so.2)
// exports it; a LibTorch with oneDNN linked in privately does not, and then
// CpuSgemmAvailable() is false and callers stay with ATen. oneDNN picks its
// kernels from the CPU's features (AVX2, AVX-512, ...), where some BLAS
// builds fall back to SSE kernels on CPU models they do not know.
// Torch-free. Thread-safe; parallel inside over the OpenMP threads.
#ifndef FEDFM_MODEL_INTERNAL_CPU_GEMM_H_
#define FEDFM_MODEL_INTERNAL_CPU_GEMM_H_

#include <cstdint>

namespace fedfm::model::internal {

bool CpuSgemmAvailable();

// Row-major C[m, n] = alpha * op(A) op(B) + beta * C, op(A) [m, k] (A is
// [k, m] when trans_a), op(B) [k, n] (B is [n, k] when trans_b); lda, ldb,
// ldc are row strides in elements. FEDFM_CHECK-fails when unavailable or
// when oneDNN reports an error.
void CpuSgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
              const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

}  // namespace fedfm::model::internal

#endif  // FEDFM_MODEL_INTERNAL_CPU_GEMM_H_
