#include "model/internal/cpu_gemm.h"

#include <dlfcn.h>

#include "protocols/check.h"

namespace fedfm::model::internal {
namespace {

// oneDNN's C API (dnnl.h, stable since oneDNN 1.0): dnnl_dim_t is int64_t,
// dnnl_status_t an enum with dnnl_success = 0.
using SgemmFn = int (*)(char transa, char transb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                        int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

SgemmFn Find() {
  static const SgemmFn fn = reinterpret_cast<SgemmFn>(dlsym(RTLD_DEFAULT, "dnnl_sgemm"));
  return fn;
}

}  // namespace

bool CpuSgemmAvailable() { return Find() != nullptr; }

void CpuSgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
              const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  const SgemmFn fn = Find();
  FEDFM_CHECK_MSG(fn != nullptr, "CpuSgemm: dnnl_sgemm is not loaded");
  const int status = fn(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  FEDFM_CHECK_MSG(status == 0, "CpuSgemm: dnnl_sgemm failed");
}

}  // namespace fedfm::model::internal
