// Fractal windowed attention (docs/ops.md, fractal_attention): what the CPU and CUDA kernels share.
//
// Every window of every level lies inside one time block of p^levels frames, so both kernels
// process (sequence, block, head) tiles independently.  Inside a tile with n valid frames,
// level 1 holds the n frames, level j+1 holds ceil(n_j / p) means of p consecutive level-j
// frames, and each level attends inside windows of p consecutive frames.
#pragma once

#include "common/math.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>

namespace fastser::fractal {

inline constexpr const char* kForwardOp = "fractal_attention";
inline constexpr const char* kBackwardOp = "fractal_attention_backward";

// At most this many levels are ever computed (see Geometry::levels).
inline constexpr int kMaxLevels = 64;

// The sizes of one call.
//
// When p^levels >= T the whole padded sequence is one block of T frames.  Its levels then
// shrink to a single frame, and every level above the first single-frame level is that same
// frame again (the mean of one frame, attending to itself: Y = V).  Those levels are computed
// once: `levels` counts the distinct levels, and the top one is weighted by
// `top_multiplicity` (1 + the number of repeated levels above it).
struct Geometry {
  int64_t batch = 0, time = 0, heads = 0, dim = 0;
  int64_t p = 0;                 // frames per window and per group, capped at block_frames
  int64_t levels = 0;            // distinct levels computed (1..kMaxLevels)
  int64_t top_multiplicity = 1;  // weight of the top computed level's GELU term
  int64_t block_frames = 0;      // frames per block: p^levels, or T when that is not below T
  int64_t num_blocks = 0;        // ceil(T / block_frames)
  int64_t pooled_frames = 0;     // frames of levels 2..levels in one full block
  double scale = 0.0;            // multiplies Q K^T

  int64_t num_tiles() const { return batch * num_blocks * heads; }
};

// Validates the op's arguments (raising ValueErrors "fastser.<op>: ..." naming the argument,
// including lengths outside [1, T]) and returns the call's geometry.  grad_out is checked
// against q when given (the backward op).
Geometry check_and_plan(const char* op, const at::Tensor& q, const at::Tensor& k,
                        const at::Tensor& v, const std::optional<at::Tensor>& lengths, int64_t p,
                        int64_t levels, std::optional<double> scale,
                        const at::Tensor* grad_out = nullptr);

// t itself when its last dimension is unit-strided (kernels take the other strides), else a
// contiguous copy.
at::Tensor with_unit_last_stride(const at::Tensor& t);

// Frames of the level above a level of n frames.
FASTSER_HOST_DEVICE int64_t level_above(int64_t n, int64_t p) { return ceil_div(n, p); }

// Frames of the group (or window) starting at frame `first` of a level of n frames.
FASTSER_HOST_DEVICE int64_t group_size(int64_t first, int64_t n, int64_t p) {
  return n - first < p ? n - first : p;
}

}  // namespace fastser::fractal
