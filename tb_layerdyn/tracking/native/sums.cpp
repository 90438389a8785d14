// The metrics' pass in one loop per path, the weight sketches in one call, on the CPU, and the
// event writer's checksum (see native/__init__.py).
//
// The eager flat pass (tracking/reduce.py) copies the weights and gradients into its rows, then
// forms the per-block sums with seven torch ops, each a pass over the rows. This reads each
// parameter, gradient and snapshot once, in place, and writes the weights' row once. Blocks are
// fixed and summed in a fixed order, so the result does not depend on torch.get_num_threads().

#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <vector>

namespace {

// Elements per block of the flat path: reduce.py's BLOCK, each layer padded to whole blocks.
constexpr int64_t kFlatBlock = 256;
// Independent accumulators per sum, so that the compiler can keep them in one vector register.
constexpr int kLanes = 8;

// Blocks per task of parallel_for.
constexpr int64_t kGrain = 64;

// Four float lanes (GCC and Clang vector extensions): SSE2 registers on any x86-64, NEON on arm64,
// without building for one CPU (a home directory may be shared by machines of several kinds).
typedef float Lanes4 __attribute__((vector_size(16)));
typedef int32_t Mask4 __attribute__((vector_size(16)));

inline Lanes4 load4(const float* p) {
  Lanes4 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline Lanes4 abs4(Lanes4 x) {
  const Mask4 magnitude = {0x7fffffff, 0x7fffffff, 0x7fffffff, 0x7fffffff};
  return reinterpret_cast<Lanes4>(reinterpret_cast<Mask4>(x) & magnitude);
}

// The six sums of both kernels, in eight lanes held as two vectors: w^2, g^2, (w - p)^2,
// (w - w0)^2, |w - p|, |p|. Lane l adds the elements k * 8 + l in order; lane_total adds the
// lanes 0 to 7. The order is fixed, so the bits do not depend on how the work is split.
typedef Lanes4 Sums[6][2];

inline void add_lanes(Sums& acc, int h, Lanes4 w, Lanes4 g, Lanes4 p, Lanes4 w0) {
  const Lanes4 d = w - p, e = w - w0;
  acc[0][h] += w * w;
  acc[1][h] += g * g;
  acc[2][h] += d * d;
  acc[3][h] += e * e;
  acc[4][h] += abs4(d);
  acc[5][h] += abs4(p);
}

inline float lane_total(const Lanes4 (&sum)[2]) {
  float r = 0;
  for (int h = 0; h < 2; ++h) {
    for (int l = 0; l < 4; ++l) r += sum[h][l];
  }
  return r;
}

// One block's six sums into o[0], o[row], ... o[5 * row].
inline void block_sums(const float* w, const float* g, const float* p, const float* w0, float* o,
                       int64_t row) {
  static_assert(kLanes == 8, "two vectors of four lanes");
  Sums acc = {};
  for (int64_t k = 0; k < kFlatBlock; k += kLanes) {
    for (int h = 0; h < 2; ++h) {
      const int64_t i = k + 4 * h;
      add_lanes(acc, h, load4(w + i), load4(g + i), load4(p + i), load4(w0 + i));
    }
  }
  for (int j = 0; j < 6; ++j) o[j * row] = lane_total(acc[j]);
}

void check_rows(const torch::Tensor& t, const char* name, int64_t numel) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be on the CPU");
  TORCH_CHECK(t.scalar_type() == torch::kFloat32, name, " must be float32");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.numel() == numel, name, " has ", t.numel(), " elements, expected ", numel);
}

// keep, when not empty, receives a copy of the whole sums buffer at the end of a pass (the slot of
// a packed record's batch): a training step leaves the host's caches cold, and this copy costs a
// torch or numpy call ten times more there than here.
void check_keep(const torch::Tensor& sums, const torch::Tensor& keep) {
  if (!keep.numel()) return;
  check_rows(sums, "sums", sums.numel());
  check_rows(keep, "keep", sums.numel());
}

void copy_kept(const torch::Tensor& sums, torch::Tensor& keep) {
  if (keep.numel()) std::memcpy(keep.data_ptr<float>(), sums.data_ptr<float>(), sums.numel() * sizeof(float));
}

// The whole flat pass of one call: the flat parameters' weights and gradients read where they are
// (no copies in first), the weights written into w_row (the next call's previous weights), and
// each block's six sums into rows 0..5 of out. places is (parameters x 2) int64: each
// parameter's offset in the rows and its element count, ascending and apart, as reduce.py lays
// them out (whole blocks per layer, zero pads).
//
// A gradient whose dtype or strides differ from its weight's is first copied into its segment
// of g_row (where the eager pass copies every gradient); an empty grads list means g_row already
// holds them (an optimizer pre-hook read them).
//
// When keep is not empty, the whole sums buffer (sums, of which out is a part) is then copied
// into it (copy_kept).
//
// Returns the total of the six sums over all blocks and the total of the gradients' squares, for
// the caller's check of a steady call (finite, some gradient not zero) without another pass.
std::tuple<double, double> flat_pass(const std::vector<torch::Tensor>& weights,
                                     const std::vector<torch::Tensor>& grads, const torch::Tensor& places,
                                     torch::Tensor& w_row, torch::Tensor& g_row, const torch::Tensor& prev,
                                     const torch::Tensor& init, torch::Tensor& out, const torch::Tensor& sums,
                                     torch::Tensor& keep) {
  const int64_t n = w_row.numel();
  TORCH_CHECK(n % kFlatBlock == 0, "the flat rows must hold whole blocks of ", kFlatBlock);
  const int64_t blocks = n / kFlatBlock;
  check_keep(sums, keep);
  check_rows(w_row, "the weights row", n);
  check_rows(g_row, "the gradients row", n);
  check_rows(prev, "prev", n);
  check_rows(init, "init", n);
  TORCH_CHECK(out.device().is_cpu() && out.scalar_type() == torch::kFloat32, "out must be CPU float32");
  TORCH_CHECK(out.dim() == 2 && out.size(0) == 6 && out.size(1) == blocks && out.stride(1) == 1,
              "out must be 6 rows of one value per block");
  const int64_t count = static_cast<int64_t>(weights.size());
  TORCH_CHECK(places.device().is_cpu() && places.scalar_type() == torch::kInt64 && places.is_contiguous() &&
                  places.dim() == 2 && places.size(0) == count && places.size(1) == 2,
              "places must be one (offset, numel) int64 row per weight");
  TORCH_CHECK(grads.empty() || static_cast<int64_t>(grads.size()) == count,
              "grads must be empty or hold one tensor per weight");
  const int64_t* place = places.data_ptr<int64_t>();
  std::vector<const float*> w_src(count), g_src(count);
  int64_t end = 0;
  float* g_base = g_row.data_ptr<float>();
  for (int64_t j = 0; j < count; ++j) {
    const torch::Tensor& w = weights[j];
    const int64_t offset = place[2 * j], numel = place[2 * j + 1];
    TORCH_CHECK(offset >= end && numel >= 0 && offset + numel <= n, "places must be ascending and inside the rows");
    end = offset + numel;
    TORCH_CHECK(w.device().is_cpu() && w.scalar_type() == torch::kFloat32 && w.numel() == numel &&
                    w.is_non_overlapping_and_dense(),
                "weight ", j, " must be a dense CPU float32 tensor of ", numel, " elements");
    w_src[j] = w.data_ptr<float>();
    if (grads.empty()) {
      g_src[j] = g_base + offset;
      continue;
    }
    const torch::Tensor& g = grads[j];
    TORCH_CHECK(g.sizes() == w.sizes(), "gradient ", j, " has shape ", g.sizes(), ", its weight ", w.sizes());
    if (g.device().is_cpu() && g.scalar_type() == torch::kFloat32 && g.strides() == w.strides()) {
      g_src[j] = g.data_ptr<float>();
    } else {
      g_row.as_strided(w.sizes(), w.strides(), g_row.storage_offset() + offset).copy_(g);
      g_src[j] = g_base + offset;
    }
  }
  float* wr = w_row.data_ptr<float>();
  const float* pp = prev.data_ptr<float>();
  const float* ip = init.data_ptr<float>();
  float* o = out.data_ptr<float>();
  const int64_t row = out.stride(0);
  at::parallel_for(0, blocks, kGrain, [&](int64_t first, int64_t last) {
    // The first parameter that ends after this task's first block.
    int64_t j = 0;
    {
      int64_t lo = 0, hi = count;
      const int64_t start = first * kFlatBlock;
      while (lo < hi) {
        const int64_t mid = (lo + hi) / 2;
        if (place[2 * mid] + place[2 * mid + 1] <= start) lo = mid + 1; else hi = mid;
      }
      j = lo;
    }
    alignas(64) float wb[kFlatBlock];
    alignas(64) float gb[kFlatBlock];
    for (int64_t b = first; b < last; ++b) {
      const int64_t s = b * kFlatBlock, e = s + kFlatBlock;
      std::memset(wb, 0, sizeof(wb));
      std::memset(gb, 0, sizeof(gb));
      while (j < count && place[2 * j] < e) {
        const int64_t offset = place[2 * j], stop = offset + place[2 * j + 1];
        const int64_t a = std::max(offset, s), z = std::min(stop, e);
        if (z > a) {
          std::memcpy(wb + (a - s), w_src[j] + (a - offset), (z - a) * sizeof(float));
          std::memcpy(gb + (a - s), g_src[j] + (a - offset), (z - a) * sizeof(float));
        }
        if (stop > e) break;  // goes on in the next block
        ++j;
      }
      std::memcpy(wr + s, wb, sizeof(wb));
      block_sums(wb, gb, pp + s, ip + s, o + b, row);
    }
  });
  double total = 0, grads_total = 0;
  for (int j = 0; j < 6; ++j) {
    double sum = 0;
    for (int64_t b = 0; b < blocks; ++b) sum += o[j * row + b];
    total += sum;
    if (j == 1) grads_total = sum;
  }
  copy_kept(sums, keep);
  return {total, grads_total};
}

// The chunked path's pass over one large parameter, in place: per chunk of `chunk` elements of the
// flat rows w (the weights), prev and init (its snapshots) and g (its gradient, when given), the
// sums w^2, g^2, (w - p)^2, (w - w0)^2, |w - p| and |p| into the columns `columns` (six, in that
// order) of the chunk's sums row, then prev = w. Each element is read once and prev written once:
// the 20 bytes per parameter of the memory-traffic bound. Chunks are fixed, so the bits do not
// depend on the thread count.
//
// With `grads` and no g (empty), the gradient's column is zeroed (the caller sums that gradient
// itself, into row 0); without `grads`, row 0's gradient column is left as it is (an optimizer
// pre-hook filled it) and the other rows' are zeroed.
//
// When keep is not empty, the whole sums buffer (sums, of which rows is a part) is then copied
// into it, as flat_pass does: the caller passes it to the last pass of a call only.
//
// Returns the total of the six columns over the parameter's rows (row 0's gradient column as it
// is then) and the total of the gradient column, as flat_pass does.
std::tuple<double, double> chunked_pass(const torch::Tensor& w, torch::Tensor& prev, const torch::Tensor& init,
                                        torch::Tensor& rows, const torch::Tensor& columns, int64_t chunk,
                                        const torch::Tensor& g, bool grads, const torch::Tensor& sums,
                                        torch::Tensor& keep) {
  const int64_t n = w.numel();
  check_rows(w, "weights", n);
  check_rows(prev, "prev", n);
  check_rows(init, "init", n);
  const bool with_g = g.numel() > 0;
  if (with_g) check_rows(g, "grad", n);
  TORCH_CHECK(chunk > 0 && chunk % kLanes == 0, "chunk must be a positive multiple of ", kLanes);
  const int64_t chunks = std::max<int64_t>(1, (n + chunk - 1) / chunk);
  TORCH_CHECK(rows.device().is_cpu() && rows.scalar_type() == torch::kFloat32 && rows.dim() == 2 &&
                  rows.size(0) == chunks && rows.stride(1) == 1,
              "rows must be one CPU float32 sums row per chunk (", chunks, ")");
  TORCH_CHECK(columns.device().is_cpu() && columns.scalar_type() == torch::kInt64 && columns.numel() == 6 &&
                  columns.is_contiguous(),
              "columns must be six int64 column indices");
  const int64_t* col = columns.data_ptr<int64_t>();
  for (int j = 0; j < 6; ++j) {
    TORCH_CHECK(col[j] >= 0 && col[j] < rows.size(1), "column ", col[j], " is outside the sums rows");
  }
  check_keep(sums, keep);
  const float* wp = w.data_ptr<float>();
  const float* gp = with_g ? g.data_ptr<float>() : nullptr;
  float* pp = prev.data_ptr<float>();
  const float* ip = init.data_ptr<float>();
  float* r0 = rows.data_ptr<float>();
  const int64_t stride = rows.stride(0);
  at::parallel_for(0, chunks, 1, [&](int64_t first, int64_t last) {
    for (int64_t c = first; c < last; ++c) {
      const int64_t a = c * chunk, z = std::min(n, a + chunk);
      Sums acc = {};
      const Lanes4 no_grad = {0, 0, 0, 0};
      int64_t i = a;
      for (; i + kLanes <= z; i += kLanes) {
        for (int h = 0; h < 2; ++h) {
          const int64_t k = i + 4 * h;
          const Lanes4 wv = load4(wp + k);
          add_lanes(acc, h, wv, gp ? load4(gp + k) : no_grad, load4(pp + k), load4(ip + k));
          std::memcpy(pp + k, &wv, sizeof(wv));
        }
      }
      for (int l = 0; i < z; ++i, ++l) {  // the last chunk's tail, lane by lane
        const float wv = wp[i], pv = pp[i], d = wv - pv, e = wv - ip[i];
        const int h = l / 4, q = l % 4;
        acc[0][h][q] += wv * wv;
        if (gp) acc[1][h][q] += gp[i] * gp[i];
        acc[2][h][q] += d * d;
        acc[3][h][q] += e * e;
        acc[4][h][q] += std::fabs(d);
        acc[5][h][q] += std::fabs(pv);
        pp[i] = wv;
      }
      float* row = r0 + c * stride;
      for (int j = 0; j < 6; ++j) {
        if (j == 1 && !grads && c == 0) continue;  // the pre-hook's gradient sum
        row[col[j]] = lane_total(acc[j]);
      }
    }
  });
  double total = 0, grads_total = 0;
  for (int64_t c = 0; c < chunks; ++c) {
    const float* row = r0 + c * stride;
    for (int j = 0; j < 6; ++j) total += row[col[j]];
    grads_total += row[col[1]];
  }
  copy_kept(sums, keep);
  return {total, grads_total};
}

// The weight sketches of one call (tracking/sketch.py): for every CPU parameter, in order, each
// element added into its bucket of buffer (2 * total floats; an index of total or more stands for
// a minus sign, the bucket total places lower), then out = buffer[:total] - buffer[total:]. The
// same additions in the same order as the eager pass's index_add_ per parameter, in one call: a
// training step leaves ATen's dispatch cold, and ten index_add_ calls there cost five times what
// they cost in a warm loop. A weight that is not contiguous float32 is read through a contiguous
// float32 copy (its elements in reshape(-1) order, as the eager pass reads them).
void sketch_pass(const std::vector<torch::Tensor>& weights, const std::vector<torch::Tensor>& indices,
                 torch::Tensor& buffer, torch::Tensor& out) {
  TORCH_CHECK(weights.size() == indices.size(), "weights and indices must pair up (", weights.size(),
              " weights, ", indices.size(), " indices)");
  const int64_t total = out.numel();
  check_rows(out, "out", total);
  check_rows(buffer, "buffer", 2 * total);
  float* b = buffer.data_ptr<float>();
  std::memset(b, 0, 2 * total * sizeof(float));
  for (size_t j = 0; j < weights.size(); ++j) {
    const torch::Tensor& index = indices[j];
    torch::Tensor w = weights[j];
    TORCH_CHECK(w.device().is_cpu(), "weight ", j, " must be on the CPU");
    TORCH_CHECK(index.device().is_cpu() && index.scalar_type() == torch::kInt32 && index.is_contiguous() &&
                    index.numel() == w.numel(),
                "index ", j, " must be contiguous CPU int32 with one entry per element of its weight");
    if (w.scalar_type() != torch::kFloat32 || !w.is_contiguous()) {
      w = w.detach().reshape(-1).to(torch::kFloat32).contiguous();  // no autograd record
    }
    const float* wp = w.data_ptr<float>();
    const int32_t* ip = index.data_ptr<int32_t>();
    const int64_t n = w.numel();
    for (int64_t i = 0; i < n; ++i) {
      const int32_t k = ip[i];
      TORCH_CHECK(k >= 0 && k < 2 * total, "index ", j, " holds ", k, ", outside the buffer");
      b[k] += wp[i];
    }
  }
  float* o = out.data_ptr<float>();
  for (int64_t k = 0; k < total; ++k) o[k] = b[k] - b[total + k];
}

// The masked CRC-32C of one TFRecord frame's bytes (tracking/writer_crc.py): CRC-32C (Castagnoli,
// reflected) eight bytes at a time from eight tables, then TFRecord's mask. TensorBoard's writer
// thread checksums every record, and its pure-Python CRC (or the numpy lanes of format/framing.py)
// took 110-160 us of that thread for a 1-2 kB record, holding the GIL; this takes about a
// microsecond per kilobyte.
struct Crc32cTables {
  uint32_t t[8][256];
  Crc32cTables() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t crc = i;
      for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ ((crc & 1) ? 0x82F63B78u : 0u);
      t[0][i] = crc;
    }
    for (int k = 1; k < 8; ++k) {
      for (int i = 0; i < 256; ++i) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xFF];
    }
  }
};

uint32_t masked_crc32c(pybind11::buffer data) {
  static const Crc32cTables tables;
  const pybind11::buffer_info info = data.request();
  TORCH_CHECK(info.ndim <= 1 && (info.ndim == 0 || info.strides[0] == info.itemsize),
              "masked_crc32c takes contiguous bytes");
  const auto* p = static_cast<const uint8_t*>(info.ptr);
  size_t n = static_cast<size_t>(info.size * info.itemsize);
  const auto& t = tables.t;
  uint32_t crc = 0xFFFFFFFFu;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    word ^= crc;
    crc = t[7][word & 0xFF] ^ t[6][(word >> 8) & 0xFF] ^ t[5][(word >> 16) & 0xFF] ^
          t[4][(word >> 24) & 0xFF] ^ t[3][(word >> 32) & 0xFF] ^ t[2][(word >> 40) & 0xFF] ^
          t[1][(word >> 48) & 0xFF] ^ t[0][word >> 56];
  }
#endif
  for (; n > 0; --n, ++p) crc = t[0][(crc ^ *p) & 0xFF] ^ (crc >> 8);
  crc ^= 0xFFFFFFFFu;
  return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("flat_pass", &flat_pass, "the flat pass of one call, from the parameters themselves");
  m.def("chunked_pass", &chunked_pass, "the pass over one large parameter, chunk by chunk");
  m.def("sketch_pass", &sketch_pass, "the weight sketches of one call, every CPU parameter at once");
  m.def("masked_crc32c", &masked_crc32c, "the masked CRC-32C of a TFRecord frame's bytes");
}
