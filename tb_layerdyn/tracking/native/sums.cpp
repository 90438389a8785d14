// The flat path of the metrics' pass in one loop, on the CPU (see native/__init__.py).
//
// The eager flat pass (tracking/reduce.py) forms the per-block sums with seven torch ops after its
// two copies in, each a pass over the rows; this reads each row once. Blocks are fixed, so the
// result does not depend on torch.get_num_threads().

#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>

namespace {

// Elements per block of the flat path: reduce.py's BLOCK, each layer padded to whole blocks.
constexpr int64_t kFlatBlock = 256;
// Independent accumulators per sum, so that the compiler can keep them in one vector register.
constexpr int kLanes = 8;

void check_rows(const torch::Tensor& t, const char* name, int64_t numel) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be on the CPU");
  TORCH_CHECK(t.scalar_type() == torch::kFloat32, name, " must be float32");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.numel() == numel, name, " has ", t.numel(), " elements, expected ", numel);
}

// The flat path: per block of 256 elements of the rows w, g, p (previous) and w0 (initial), the
// sums w^2, g^2, (w - p)^2, (w - w0)^2, |w - p| and |p| into rows 0..5 of out (6 x blocks).
void flat_block_sums(const torch::Tensor& w, const torch::Tensor& g, const torch::Tensor& p,
                     const torch::Tensor& w0, torch::Tensor& out) {
  const int64_t n = w.numel();
  TORCH_CHECK(n % kFlatBlock == 0, "the flat rows must hold whole blocks of ", kFlatBlock);
  const int64_t blocks = n / kFlatBlock;
  check_rows(w, "weights", n);
  check_rows(g, "grads", n);
  check_rows(p, "prev", n);
  check_rows(w0, "init", n);
  TORCH_CHECK(out.device().is_cpu() && out.scalar_type() == torch::kFloat32, "out must be CPU float32");
  TORCH_CHECK(out.dim() == 2 && out.size(0) == 6 && out.size(1) == blocks && out.stride(1) == 1,
              "out must be 6 rows of one value per block");
  const float* wp = w.data_ptr<float>();
  const float* gp = g.data_ptr<float>();
  const float* pp = p.data_ptr<float>();
  const float* ip = w0.data_ptr<float>();
  float* o = out.data_ptr<float>();
  const int64_t row = out.stride(0);
  at::parallel_for(0, blocks, 64, [&](int64_t first, int64_t last) {
    for (int64_t b = first; b < last; ++b) {
      const int64_t s = b * kFlatBlock;
      float sw[kLanes] = {0}, sg[kLanes] = {0}, sd[kLanes] = {0}, se[kLanes] = {0};
      float ad[kLanes] = {0}, ap[kLanes] = {0};
      for (int64_t k = 0; k < kFlatBlock; k += kLanes) {
        for (int l = 0; l < kLanes; ++l) {
          const int64_t i = s + k + l;
          const float wv = wp[i], gv = gp[i], pv = pp[i];
          const float d = wv - pv, e = wv - ip[i];
          sw[l] += wv * wv;
          sg[l] += gv * gv;
          sd[l] += d * d;
          se[l] += e * e;
          ad[l] += std::fabs(d);
          ap[l] += std::fabs(pv);
        }
      }
      float r[6] = {0, 0, 0, 0, 0, 0};
      for (int l = 0; l < kLanes; ++l) {
        r[0] += sw[l];
        r[1] += sg[l];
        r[2] += sd[l];
        r[3] += se[l];
        r[4] += ad[l];
        r[5] += ap[l];
      }
      for (int j = 0; j < 6; ++j) o[j * row + b] = r[j];
    }
  });
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("flat_block_sums", &flat_block_sums, "per-block sums of the flat rows");
}
