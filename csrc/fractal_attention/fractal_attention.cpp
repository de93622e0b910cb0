// Argument checks and geometry of the fractal attention op, shared by its CPU and CUDA entry
// points.
#include "fractal_attention/fractal_attention.h"

#include "common/checks.h"

#include <algorithm>
#include <cmath>

namespace fastser::fractal {

namespace {

void check_qkv(const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  check_floating(q, op, "q");
  check_floating(k, op, "k");
  check_floating(v, op, "v");
  check_dim(q, 4, op, "q", "(B, T, H, D)");
  check_dim(k, 4, op, "k", "(B, T, H, D)");
  check_dim(v, 4, op, "v", "(B, T, H, D)");
  check_same_shape(k, q, op, "k", "q");
  check_same_shape(v, q, op, "v", "q");
  check_same_device(k, q, op, "k", "q");
  check_same_device(v, q, op, "v", "q");
  check_same_dtype(k, q, op, "k", "q");
  check_same_dtype(v, q, op, "v", "q");
  check_device_dtype(q, op, "q");
}

// Sets block_frames, num_blocks, levels, top_multiplicity and pooled_frames, and caps p at
// block_frames (a window or group of p >= block_frames frames is the whole level either way).
void plan_levels(Geometry& g, int64_t levels) {
  const int64_t T = g.time;
  if (T == 0) {
    return;
  }
  // span = p^j while it stays below T (it doubles at least, so this stops within 63 steps).
  int64_t span = 1;
  bool one_block = false;
  for (int64_t j = 0; j < levels; ++j) {
    if (span > (T - 1) / g.p) {  // span * p >= T
      one_block = true;
      break;
    }
    span *= g.p;
  }
  g.block_frames = one_block ? T : span;
  g.p = std::min(g.p, g.block_frames);
  g.num_blocks = ceil_div(T, g.block_frames);
  g.levels = levels;
  g.top_multiplicity = 1;
  if (one_block) {
    int64_t frames = T;
    int64_t distinct = 1;
    while (distinct < levels && frames > 1) {
      frames = level_above(frames, g.p);
      ++distinct;
    }
    g.levels = distinct;
    g.top_multiplicity = levels - distinct + 1;
  }
  int64_t frames = g.block_frames;
  g.pooled_frames = 0;
  for (int64_t j = 1; j < g.levels; ++j) {
    frames = level_above(frames, g.p);
    g.pooled_frames += frames;
  }
}

}  // namespace

Geometry check_and_plan(const char* op, const at::Tensor& q, const at::Tensor& k,
                        const at::Tensor& v, const std::optional<at::Tensor>& lengths, int64_t p,
                        int64_t levels, std::optional<double> scale, const at::Tensor* grad_out) {
  check_qkv(op, q, k, v);
  if (grad_out != nullptr) {
    check_same_shape(*grad_out, q, op, "grad_out", "q");
    check_same_device(*grad_out, q, op, "grad_out", "q");
    check_same_dtype(*grad_out, q, op, "grad_out", "q");
  }
  FASTSER_CHECK(p >= 2, op, "p (frames per window and per pooled group) must be >= 2, got ", p);
  FASTSER_CHECK(levels >= 1, op, "levels must be >= 1, got ", levels);
  if (scale.has_value()) {
    check_finite(*scale, op, "scale");
  }
  Geometry g;
  g.batch = q.size(0);
  g.time = q.size(1);
  g.heads = q.size(2);
  g.dim = q.size(3);
  g.p = p;
  check_lengths(lengths, g.batch, g.time, q, op);
  plan_levels(g, levels);
  // p^levels < T <= 2^63 bounds the levels of multi-block calls, log_p(T) those of one block.
  TORCH_INTERNAL_ASSERT(g.levels <= kMaxLevels);
  g.scale = scale.has_value() ? *scale : 1.0 / std::sqrt(static_cast<double>(g.dim));
  return g;
}

at::Tensor with_unit_last_stride(const at::Tensor& t) {
  return t.size(-1) <= 1 || t.stride(-1) == 1 ? t : t.contiguous();
}

}  // namespace fastser::fractal
