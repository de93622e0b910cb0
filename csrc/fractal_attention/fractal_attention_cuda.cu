// CUDA kernels of the fractal attention op (docs/ops.md, fractal_attention).
//
// One thread block per (sequence, time block, head) tile (grid-stride over tiles).  A tile is
// staged once into shared memory in the input dtype (16-byte vector loads when the layout
// allows) and the pooled levels are built there in float32.  A warp owns a window, its lanes
// own head dimensions; it takes 4 query rows at a time, their 4 x 4 dot products with a chunk
// of keys reduced together by a transposing butterfly.  The windows of all pooled levels are
// computed at once, their GELU sums (gradients, in backward) combined from the top down, and
// level 1 last, writing each output row once.  Backward recomputes the tile's attention and
// accumulates every gradient row inside the warp that owns it, in a fixed order: no atomics,
// the same bits on every run.  When a tile does not fit in shared memory (very long blocks or
// wide heads) the same kernel runs on a per-block workspace in global memory.
#include "fractal_attention/fractal_attention.h"

#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "common/dispatch.h"
#include "common/math.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAMacros.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <mutex>

namespace fastser::fractal {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = 32 * kWarps;
constexpr int kRowChunk = 4;  // query rows (and keys) a warp takes together: 16 dot products

// --- tile layout ----------------------------------------------------------------------------

// A (B, T, H, D) input with a unit-strided last dimension.
template <typename T>
struct Strided {
  const T* data;
  int64_t batch_stride, time_stride, head_stride;
};

template <typename T>
Strided<T> strided(const at::Tensor& t) {
  return {static_cast<const T*>(t.data_ptr()), t.stride(0), t.stride(1), t.stride(2)};
}

constexpr int64_t align16(int64_t bytes) { return (bytes + 15) / 16 * 16; }

// Byte offsets of a tile's buffers in its shared memory (or global workspace).
struct TileLayout {
  int64_t staged[4] = {};  // level-1 rows of the inputs, in the input dtype
  int64_t pooled[4] = {};  // levels 2.. of the inputs, float32
  int64_t level_rows = 0;  // forward: GELU sums of levels 2..; backward: dq, dk, dv of 2..
  int64_t warp = 0;        // per-warp scratch, warp_bytes each
  int64_t warp_bytes = 0;
  int64_t total = 0;
};

// inputs: 3 (q, k, v) forward, 4 (+ grad_out) backward.
TileLayout make_layout(const Geometry& g, int inputs, int64_t element_size) {
  TileLayout layout;
  int64_t at = 0;
  for (int x = 0; x < inputs; ++x) {
    layout.staged[x] = at;
    at += align16(g.block_frames * g.dim * element_size);
  }
  for (int x = 0; x < inputs; ++x) {
    layout.pooled[x] = at;
    at += align16(g.pooled_frames * g.dim * 4);
  }
  const bool backward = inputs == 4;
  layout.level_rows = at;
  at += align16((backward ? 3 : 1) * g.pooled_frames * g.dim * 4);
  layout.warp = at;
  // forward: softmax weights of a row chunk; backward: weights, dscores and dY of a row chunk,
  // and the level-1 window gradients.
  layout.warp_bytes = align16(
      backward ? (2 * kRowChunk * g.p + kRowChunk * g.dim + 3 * g.p * g.dim) * 4
               : kRowChunk * g.p * 4);
  at += kWarps * layout.warp_bytes;
  layout.total = at;
  return layout;
}

// Everything a kernel needs, passed by value.
template <typename scalar_t>
struct Params {
  Strided<scalar_t> in[4];  // q, k, v (, grad_out)
  scalar_t* out[3];         // forward: out; backward: dq, dk, dv (contiguous (B, T, H, D))
  const int64_t* lengths;   // nullptr: every sequence has T frames
  int64_t batch, time, heads, dim, p, levels, top_multiplicity;
  int64_t block_frames, num_blocks, pooled_frames;
  float scale;
  bool vector_loads;        // 16-byte loads of the inputs are aligned
  TileLayout layout;
  unsigned char* workspace;  // nullptr: the tile lives in shared memory
};

// --- per-tile helpers -----------------------------------------------------------------------

struct Tile {
  int64_t b, h, t0, rows, valid;
};

template <typename P>
__device__ Tile locate(const P& prm, int64_t task) {
  Tile tile;
  tile.h = task % prm.heads;
  const int64_t block = (task / prm.heads) % prm.num_blocks;
  tile.b = task / (prm.heads * prm.num_blocks);
  tile.t0 = block * prm.block_frames;
  const int64_t left = prm.time - tile.t0;
  tile.rows = left < prm.block_frames ? left : prm.block_frames;
  const int64_t length = prm.lengths != nullptr ? prm.lengths[tile.b] : prm.time;
  const int64_t valid = length - tile.t0;
  tile.valid = valid < 0 ? 0 : (valid < tile.rows ? valid : tile.rows);
  return tile;
}

// Frames of each level and where levels 2.. start in the pooled buffers (rows).
struct LevelTable {
  int64_t frames[kMaxLevels];
  int64_t offset[kMaxLevels];
};

__device__ void fill_level_table(LevelTable& table, int64_t valid, int64_t p, int64_t levels) {
  table.frames[0] = valid;
  table.offset[0] = 0;
  int64_t offset = 0;
  for (int64_t j = 1; j < levels; ++j) {
    table.frames[j] = level_above(table.frames[j - 1], p);
    table.offset[j] = offset;
    offset += table.frames[j];
  }
}

__device__ __forceinline__ float to_float(float x) { return x; }
template <typename T>
__device__ __forceinline__ float to_float(T x) {
  return static_cast<float>(x);
}

// Output row (b, t, h) of a contiguous (B, T, H, D) tensor.
template <typename P>
__device__ __forceinline__ int64_t out_row(const P& prm, const Tile& tile, int64_t f) {
  return ((tile.b * prm.time + tile.t0 + f) * prm.heads + tile.h) * prm.dim;
}

// Tile-local element counts stay below INT32_MAX - kThreads (check_tile_size), so the index
// arithmetic of the copy loops below avoids 64-bit divisions and their last step cannot overflow.

// Zero rows [valid, rows) of the tile in `out`.
template <typename scalar_t, typename P>
__device__ void zero_padding(const P& prm, const Tile& tile, scalar_t* out) {
  const int dim = static_cast<int>(prm.dim);
  const int count = static_cast<int>(tile.rows - tile.valid) * dim;
  for (int e = threadIdx.x; e < count; e += blockDim.x) {
    out[out_row(prm, tile, tile.valid + e / dim) + e % dim] = scalar_t(0);
  }
}

// Copies the tile's valid level-1 rows of `src` into `dst` (rows of dim elements).
template <typename scalar_t, typename P>
__device__ void stage_rows(const P& prm, const Tile& tile, const Strided<scalar_t>& src,
                           scalar_t* dst) {
  const scalar_t* base = src.data + tile.b * src.batch_stride + tile.t0 * src.time_stride +
                         tile.h * src.head_stride;
  if (prm.vector_loads) {
    constexpr int kPerVector = 16 / sizeof(scalar_t);
    const int per_row = static_cast<int>(prm.dim) / kPerVector;
    const int count = static_cast<int>(tile.valid) * per_row;
    uint4* out = reinterpret_cast<uint4*>(dst);
    for (int e = threadIdx.x; e < count; e += blockDim.x) {
      const int f = e / per_row, u = e % per_row;
      out[e] = *reinterpret_cast<const uint4*>(base + f * src.time_stride + u * kPerVector);
    }
  } else {
    const int dim = static_cast<int>(prm.dim);
    const int count = static_cast<int>(tile.valid) * dim;
    for (int e = threadIdx.x; e < count; e += blockDim.x) {
      dst[e] = base[(e / dim) * src.time_stride + e % dim];
    }
  }
}

// Rows of level j+1 (float32) from level j (`below`, n rows): group sums, or means.
template <typename T>
__device__ void pool_rows(float* above, const T* below, int64_t n, int64_t p, int64_t dim,
                          bool mean) {
  const int d32 = static_cast<int>(dim);
  const int count = static_cast<int>(level_above(n, p)) * d32;
  for (int e = threadIdx.x; e < count; e += blockDim.x) {
    const int64_t first = (e / d32) * p, members = group_size(first, n, p);
    const T* column = below + first * dim + e % d32;
    float sum = 0.f;
    for (int64_t c = 0; c < members; ++c) {
      sum += to_float(column[c * dim]);
    }
    above[e] = mean ? sum / static_cast<float>(members) : sum;
  }
}

// The q, k, v rows of one level (contiguous rows of dim elements).
template <typename T>
struct LevelView {
  const T* q;
  const T* k;
  const T* v;
  int64_t frames;
};

// Calls fn(j, first, count) for the windows of levels j = 2..top+1 (1..top counted from 0)
// handed to this warp: the windows of every pooled level are dealt to the warps together.
template <typename Fn>
__device__ void for_pooled_windows(const LevelTable& table, int64_t top, int64_t p,
                                   const Fn& fn) {
  const int warp = threadIdx.x / 32;
  int64_t dealt = 0;  // windows of the levels below j
  for (int64_t j = 1; j <= top; ++j) {
    const int64_t windows = level_above(table.frames[j], p);
    for (int64_t w = ((warp - dealt) % kWarps + kWarps) % kWarps; w < windows; w += kWarps) {
      fn(j, w * p, group_size(w * p, table.frames[j], p));
    }
    dealt += windows;
  }
}

// Calls fn(first, count) for this warp's windows of a level of n frames.
template <typename Fn>
__device__ void for_level_windows(int64_t n, int64_t p, const Fn& fn) {
  for (int64_t w = threadIdx.x / 32; w * p < n; w += kWarps) {
    fn(w * p, group_size(w * p, n, p));
  }
}

// One butterfly round of warp_sum16: keeps half of the values, sums them with the partner lane.
template <int kCount, int kOffset>
__device__ __forceinline__ void butterfly(float (&v)[16], int lane) {
  const bool upper = (lane & kOffset) != 0;
#pragma unroll
  for (int k = 0; k < kCount / 2; ++k) {
    const float send = upper ? v[k] : v[k + kCount / 2];
    const float keep = upper ? v[k + kCount / 2] : v[k];
    v[k] = keep + __shfl_xor_sync(0xffffffffu, send, kOffset);
  }
}

// Sums each of 16 per-lane values over the warp with 16 shuffles (a transposing butterfly)
// instead of 16 x 5: returns the total of value lane / 2 (lanes 2m and 2m + 1 get value m).
__device__ __forceinline__ float warp_sum16(float (&v)[16]) {
  const int lane = threadIdx.x % 32;
  butterfly<16, 16>(v, lane);
  butterfly<8, 8>(v, lane);
  butterfly<4, 4>(v, lane);
  butterfly<2, 2>(v, lane);
  return v[0] + __shfl_xor_sync(0xffffffffu, v[0], 1);
}

// out[r * out_stride + c] = scale * a_r . b_c for rows r < na of `a` and c < nb of `b` (rows of
// dim elements), both at most kRowChunk; one warp, lanes over the dimensions.
template <typename TA, typename TB>
__device__ void dot_block(const TA* a, int na, const TB* b, int nb, int64_t dim, float scale,
                          float* out, int64_t out_stride) {
  const int lane = threadIdx.x % 32;
  float v[16];
#pragma unroll
  for (int e = 0; e < 16; ++e) {
    v[e] = 0.f;
  }
  for (int64_t d = lane; d < dim; d += 32) {
    float ad[kRowChunk], bd[kRowChunk];
#pragma unroll
    for (int r = 0; r < kRowChunk; ++r) {
      ad[r] = r < na ? to_float(a[r * dim + d]) : 0.f;
      bd[r] = r < nb ? to_float(b[r * dim + d]) : 0.f;
    }
#pragma unroll
    for (int r = 0; r < kRowChunk; ++r) {
#pragma unroll
      for (int c = 0; c < kRowChunk; ++c) {
        v[r * kRowChunk + c] += ad[r] * bd[c];
      }
    }
  }
  const float total = warp_sum16(v);
  const int m = lane / 2, r = m / kRowChunk, c = m % kRowChunk;
  if (lane % 2 == 0 && r < na && c < nb) {
    out[r * out_stride + c] = scale * total;
  }
}

// weights[r * p + c] = softmax_c(scale * q_{i0+r} . k_{first+c}) for the nq query rows from i0
// over their window's keys; one warp, the weights visible to all of it on return.
template <typename T>
__device__ void attention_weights(const LevelView<T>& lv, int64_t i0, int nq, int64_t first,
                                  int64_t count, int64_t dim, int64_t p, float scale,
                                  float* weights) {
  const int lane = threadIdx.x % 32;
  for (int64_t c0 = 0; c0 < count; c0 += kRowChunk) {
    const int nk = static_cast<int>(count - c0 < kRowChunk ? count - c0 : kRowChunk);
    dot_block(lv.q + i0 * dim, nq, lv.k + (first + c0) * dim, nk, dim, scale, weights + c0, p);
  }
  __syncwarp();
  if (lane < nq) {
    float* row = weights + lane * p;
    float top = -std::numeric_limits<float>::infinity();
    for (int64_t c = 0; c < count; ++c) {
      top = fmaxf(top, row[c]);
    }
    float total = 0.f;
    for (int64_t c = 0; c < count; ++c) {
      row[c] = expf(row[c] - top);
      total += row[c];
    }
    const float inverse = 1.f / total;
    for (int64_t c = 0; c < count; ++c) {
      row[c] *= inverse;
    }
  }
  __syncwarp();
}

// y[r] = sum_c weights[r * p + c] * v_{first+c}[d] for the chunk's nq rows.
template <typename T>
__device__ __forceinline__ void mix_values(const LevelView<T>& lv, const float* weights,
                                           int64_t first, int64_t count, int64_t p, int64_t dim,
                                           int64_t d, int nq, float (&y)[kRowChunk]) {
#pragma unroll
  for (int r = 0; r < kRowChunk; ++r) {
    y[r] = 0.f;
  }
  for (int64_t c = 0; c < count; ++c) {
    const float vc = to_float(lv.v[(first + c) * dim + d]);
#pragma unroll
    for (int r = 0; r < kRowChunk; ++r) {
      if (r < nq) {
        y[r] += weights[r * p + c] * vc;
      }
    }
  }
}

// --- forward --------------------------------------------------------------------------------

// One window (one warp): sink(i, d, GELU(Y_i[d])) for each of its rows i and dimensions d.
template <typename T, typename Sink>
__device__ void window_forward(const LevelView<T>& lv, int64_t first, int64_t count,
                               int64_t dim, int64_t p, float scale, float* weights,
                               const Sink& sink) {
  const int lane = threadIdx.x % 32;
  for (int64_t i0 = first; i0 < first + count; i0 += kRowChunk) {
    const int nq = static_cast<int>(first + count - i0 < kRowChunk ? first + count - i0
                                                                   : kRowChunk);
    attention_weights(lv, i0, nq, first, count, dim, p, scale, weights);
    for (int64_t d = lane; d < dim; d += 32) {
      float y[kRowChunk];
      mix_values(lv, weights, first, count, p, dim, d, nq, y);
#pragma unroll
      for (int r = 0; r < kRowChunk; ++r) {
        if (r < nq) {
          sink(i0 + r, d, gelu_erf(y[r]));
        }
      }
    }
    __syncwarp();  // the weights are overwritten by the next chunk
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    fractal_forward_kernel(const Params<scalar_t> prm, int64_t num_tasks) {
  extern __shared__ __align__(16) unsigned char shared[];
  __shared__ LevelTable table;
  unsigned char* base =
      prm.workspace != nullptr ? prm.workspace + blockIdx.x * prm.layout.total : shared;
  const TileLayout& L = prm.layout;
  scalar_t* staged[3];
  float* pooled[3];
  for (int x = 0; x < 3; ++x) {
    staged[x] = reinterpret_cast<scalar_t*>(base + L.staged[x]);
    pooled[x] = reinterpret_cast<float*>(base + L.pooled[x]);
  }
  float* sums = reinterpret_cast<float*>(base + L.level_rows);
  float* weights = reinterpret_cast<float*>(base + L.warp + (threadIdx.x / 32) * L.warp_bytes);
  const int64_t dim = prm.dim, p = prm.p, top = prm.levels - 1;
  const float top_weight = static_cast<float>(prm.top_multiplicity);

  FASTSER_DEVICE_ASSERT(blockDim.x == kThreads);  // the windows are dealt to kWarps warps
  for (int64_t task = blockIdx.x; task < num_tasks; task += gridDim.x) {
    const Tile tile = locate(prm, task);
    FASTSER_DEVICE_ASSERT(tile.valid <= tile.rows && tile.rows <= prm.block_frames);
    zero_padding(prm, tile, prm.out[0]);
    if (tile.valid == 0) {
      continue;
    }
    // (the previous tile ended with a barrier: the buffers are free)
    if (threadIdx.x == 0) {
      fill_level_table(table, tile.valid, p, prm.levels);
      // the pooled levels fit the buffers make_layout sized for a full block
      FASTSER_DEVICE_ASSERT(top == 0 ||
                            table.offset[top] + table.frames[top] <= prm.pooled_frames);
    }
    for (int x = 0; x < 3; ++x) {
      stage_rows(prm, tile, prm.in[x], staged[x]);
    }
    __syncthreads();
    for (int64_t j = 1; j <= top; ++j) {
      for (int x = 0; x < 3; ++x) {
        float* above = pooled[x] + table.offset[j] * dim;
        if (j == 1) {
          pool_rows(above, staged[x], table.frames[0], p, dim, true);
        } else {
          pool_rows(above, pooled[x] + table.offset[j - 1] * dim, table.frames[j - 1], p, dim,
                    true);
        }
      }
      __syncthreads();
    }
    // Levels 2..: GELU(Y_j) (times top_weight at the top), all levels at once.
    for_pooled_windows(table, top, p, [&](int64_t j, int64_t first, int64_t count) {
      const int64_t o = table.offset[j] * dim;
      const LevelView<float> lv{pooled[0] + o, pooled[1] + o, pooled[2] + o, table.frames[j]};
      const float weight = j == top ? top_weight : 1.f;
      float* rows = sums + o;
      window_forward(lv, first, count, dim, p, prm.scale, weights,
                     [&](int64_t i, int64_t d, float g) { rows[i * dim + d] = weight * g; });
    });
    __syncthreads();
    // sums_j[i] = GELU(Y_j[i]) + sums_{j+1}[i / p], from the top down.
    for (int64_t j = top - 1; j >= 1; --j) {
      float* rows = sums + table.offset[j] * dim;
      const float* parents = sums + table.offset[j + 1] * dim;
      const int d32 = static_cast<int>(dim);
      const int count = static_cast<int>(table.frames[j]) * d32;
      for (int e = threadIdx.x; e < count; e += blockDim.x) {
        rows[e] += parents[(e / d32) / p * dim + e % d32];
      }
      __syncthreads();
    }
    // Level 1: out[i] = GELU(Y_1[i]) + sums_2[i / p].
    const LevelView<scalar_t> lv{staged[0], staged[1], staged[2], table.frames[0]};
    const float* parents = top > 0 ? sums + table.offset[1] * dim : nullptr;
    for_level_windows(table.frames[0], p, [&](int64_t first, int64_t count) {
      window_forward(lv, first, count, dim, p, prm.scale, weights,
                     [&](int64_t i, int64_t d, float g) {
                       const float value =
                           parents != nullptr ? g + parents[(i / p) * dim + d] : top_weight * g;
                       prm.out[0][out_row(prm, tile, i) + d] = static_cast<scalar_t>(value);
                     });
    });
    __syncthreads();
  }
}

// --- backward -------------------------------------------------------------------------------

// Per-warp scratch of the backward kernel.
struct WarpScratch {
  float* weights;  // kRowChunk rows of p
  float* dscores;  // kRowChunk rows of p
  float* dy;       // kRowChunk rows of dim
  float* grads;    // level-1 window gradients: dq, dk, dv rows, p * dim each
};

// One window (one warp): adds the window's attention terms of dq, dk, dv to rows[x] (row r =
// frame first + r), with dY = weight * S * GELU'(Y).
template <typename T>
__device__ void window_backward(const LevelView<T>& lv, const T* s, int64_t first,
                                int64_t count, int64_t dim, int64_t p, float scale,
                                float weight, const WarpScratch& w, float* const (&rows)[3]) {
  const int lane = threadIdx.x % 32;
  for (int64_t i0 = first; i0 < first + count; i0 += kRowChunk) {
    const int nq = static_cast<int>(first + count - i0 < kRowChunk ? first + count - i0
                                                                   : kRowChunk);
    attention_weights(lv, i0, nq, first, count, dim, p, scale, w.weights);
    for (int64_t d = lane; d < dim; d += 32) {
      float y[kRowChunk];
      mix_values(lv, w.weights, first, count, p, dim, d, nq, y);
#pragma unroll
      for (int r = 0; r < kRowChunk; ++r) {
        if (r < nq) {
          w.dy[r * dim + d] = weight * to_float(s[(i0 + r) * dim + d]) * gelu_erf_grad(y[r]);
        }
      }
    }
    // dA[r][c] = dY_r . v_c, then dscore = scale * w * (dA - sum_c' w dA) in place.
    for (int64_t c0 = 0; c0 < count; c0 += kRowChunk) {
      const int nk = static_cast<int>(count - c0 < kRowChunk ? count - c0 : kRowChunk);
      dot_block(w.dy, nq, lv.v + (first + c0) * dim, nk, dim, 1.f, w.dscores + c0, p);
    }
    __syncwarp();
    if (lane < nq) {
      const float* wr = w.weights + lane * p;
      float* ds = w.dscores + lane * p;
      float mean = 0.f;
      for (int64_t c = 0; c < count; ++c) {
        mean += wr[c] * ds[c];
      }
      for (int64_t c = 0; c < count; ++c) {
        ds[c] = scale * wr[c] * (ds[c] - mean);
      }
    }
    __syncwarp();
    for (int64_t d = lane; d < dim; d += 32) {
      float qd[kRowChunk], dyd[kRowChunk];
#pragma unroll
      for (int r = 0; r < kRowChunk; ++r) {
        qd[r] = r < nq ? to_float(lv.q[(i0 + r) * dim + d]) : 0.f;
        dyd[r] = r < nq ? w.dy[r * dim + d] : 0.f;
      }
      float dq[kRowChunk];
#pragma unroll
      for (int r = 0; r < kRowChunk; ++r) {
        dq[r] = 0.f;
      }
      for (int64_t c = 0; c < count; ++c) {
        const float kc = to_float(lv.k[(first + c) * dim + d]);
        float dk = 0.f, dv = 0.f;
#pragma unroll
        for (int r = 0; r < kRowChunk; ++r) {
          if (r < nq) {
            const float ds = w.dscores[r * p + c];
            dq[r] += ds * kc;
            dk += ds * qd[r];
            dv += w.weights[r * p + c] * dyd[r];
          }
        }
        rows[1][c * dim + d] += dk;
        rows[2][c * dim + d] += dv;
      }
#pragma unroll
      for (int r = 0; r < kRowChunk; ++r) {
        if (r < nq) {
          rows[0][(i0 - first + r) * dim + d] += dq[r];
        }
      }
    }
    __syncwarp();  // weights, dscores and dy are overwritten by the next chunk
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads, 1)
    fractal_backward_kernel(const Params<scalar_t> prm, int64_t num_tasks) {
  extern __shared__ __align__(16) unsigned char shared[];
  __shared__ LevelTable table;
  unsigned char* base =
      prm.workspace != nullptr ? prm.workspace + blockIdx.x * prm.layout.total : shared;
  const TileLayout& L = prm.layout;
  const int64_t dim = prm.dim, p = prm.p, top = prm.levels - 1;
  const float top_weight = static_cast<float>(prm.top_multiplicity);
  scalar_t* staged[4];
  float* pooled[4];
  for (int x = 0; x < 4; ++x) {
    staged[x] = reinterpret_cast<scalar_t*>(base + L.staged[x]);
    pooled[x] = reinterpret_cast<float*>(base + L.pooled[x]);
  }
  float* level_grads[3];
  for (int x = 0; x < 3; ++x) {
    level_grads[x] = reinterpret_cast<float*>(base + L.level_rows) + x * prm.pooled_frames * dim;
  }
  float* scratch = reinterpret_cast<float*>(base + L.warp + (threadIdx.x / 32) * L.warp_bytes);
  const WarpScratch w{scratch, scratch + kRowChunk * p, scratch + 2 * kRowChunk * p,
                      scratch + 2 * kRowChunk * p + kRowChunk * dim};
  const int lane = threadIdx.x % 32;

  FASTSER_DEVICE_ASSERT(blockDim.x == kThreads);
  for (int64_t task = blockIdx.x; task < num_tasks; task += gridDim.x) {
    const Tile tile = locate(prm, task);
    FASTSER_DEVICE_ASSERT(tile.valid <= tile.rows && tile.rows <= prm.block_frames);
    for (int x = 0; x < 3; ++x) {
      zero_padding(prm, tile, prm.out[x]);
    }
    if (tile.valid == 0) {
      continue;
    }
    // (the previous tile ended with a barrier: the buffers are free)
    if (threadIdx.x == 0) {
      fill_level_table(table, tile.valid, p, prm.levels);
      // the pooled levels fit the buffers make_layout sized for a full block
      FASTSER_DEVICE_ASSERT(top == 0 ||
                            table.offset[top] + table.frames[top] <= prm.pooled_frames);
    }
    for (int x = 0; x < 4; ++x) {
      stage_rows(prm, tile, prm.in[x], staged[x]);
    }
    __syncthreads();
    for (int64_t j = 1; j <= top; ++j) {
      for (int x = 0; x < 4; ++x) {
        float* above = pooled[x] + table.offset[j] * dim;
        const bool mean = x < 3;  // grad_out is summed over the frames a row stands for
        if (j == 1) {
          pool_rows(above, staged[x], table.frames[0], p, dim, mean);
        } else {
          pool_rows(above, pooled[x] + table.offset[j - 1] * dim, table.frames[j - 1], p, dim,
                    mean);
        }
      }
      __syncthreads();
    }
    // Levels 2..: each level's own attention terms, all levels at once.
    for_pooled_windows(table, top, p, [&](int64_t j, int64_t first, int64_t count) {
      const int64_t o = table.offset[j] * dim;
      const LevelView<float> lv{pooled[0] + o, pooled[1] + o, pooled[2] + o, table.frames[j]};
      float* const rows[3] = {level_grads[0] + o + first * dim, level_grads[1] + o + first * dim,
                              level_grads[2] + o + first * dim};
      for (int x = 0; x < 3; ++x) {
        for (int64_t e = lane; e < count * dim; e += 32) {
          rows[x][e] = 0.f;
        }
      }
      window_backward(lv, pooled[3] + o, first, count, dim, p, prm.scale,
                      j == top ? top_weight : 1.f, w, rows);
    });
    __syncthreads();
    // From the top down, each level's gradient gains the level above's (a mean passes 1/count
    // of its gradient to each member).
    for (int64_t j = top - 1; j >= 1; --j) {
      const int d32 = static_cast<int>(dim);
      const int64_t n = table.frames[j];
      const int count = static_cast<int>(n) * d32;
      for (int x = 0; x < 3; ++x) {
        float* rows = level_grads[x] + table.offset[j] * dim;
        const float* parents = level_grads[x] + table.offset[j + 1] * dim;
        for (int e = threadIdx.x; e < count; e += blockDim.x) {
          const int64_t group = (e / d32) / p;
          rows[e] += parents[group * dim + e % d32] / static_cast<float>(group_size(group * p, n, p));
        }
      }
      __syncthreads();
    }
    // Level 1: each window's rows start from level 2's, gain the window's terms, and are final.
    const LevelView<scalar_t> lv{staged[0], staged[1], staged[2], table.frames[0]};
    for_level_windows(table.frames[0], p, [&](int64_t first, int64_t count) {
      float* const rows[3] = {w.grads, w.grads + count * dim, w.grads + 2 * count * dim};
      for (int x = 0; x < 3; ++x) {
        const float* parent = top > 0 ? level_grads[x] + table.offset[1] * dim + (first / p) * dim
                                      : nullptr;
        for (int64_t e = lane; e < count * dim; e += 32) {
          rows[x][e] = parent != nullptr ? parent[e % dim] / static_cast<float>(count) : 0.f;
        }
      }
      window_backward(lv, staged[3], first, count, dim, p, prm.scale, top > 0 ? 1.f : top_weight,
                      w, rows);
      for (int x = 0; x < 3; ++x) {
        for (int64_t e = lane; e < count * dim; e += 32) {
          prm.out[x][out_row(prm, tile, first + e / dim) + e % dim] =
              static_cast<scalar_t>(rows[x][e]);
        }
      }
      __syncwarp();  // the scratch rows are reused by the warp's next window
    });
    __syncthreads();
  }
}

// --- launch ---------------------------------------------------------------------------------

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

// 16-byte loads of every row of every input are aligned.
template <typename scalar_t>
bool vector_loads_ok(const Params<scalar_t>& prm, int inputs) {
  constexpr int64_t per_vector = 16 / sizeof(scalar_t);
  if (prm.dim % per_vector != 0) {
    return false;
  }
  for (int x = 0; x < inputs; ++x) {
    const auto& in = prm.in[x];
    if (!aligned16(in.data) || in.batch_stride % per_vector != 0 ||
        in.time_stride % per_vector != 0 || in.head_stride % per_vector != 0) {
      return false;
    }
  }
  return true;
}

// Raises `kernel`'s dynamic shared-memory limit on `device` once, to all the device allows
// besides the static LevelTable.  The attribute belongs to the function and is shared by every
// host thread, so it is never lowered: setting it per call to the call's own size would let a
// thread launching a smaller tile lower it between another thread's set and launch.
template <auto kernel>
void allow_all_shared_memory(int device, int bytes) {
  static std::once_flag flags[C10_COMPILE_TIME_MAX_GPUS];
  TORCH_INTERNAL_ASSERT(device >= 0 && device < C10_COMPILE_TIME_MAX_GPUS);
  // A failed set throws out of call_once, which leaves the flag unset: the next call retries.
  std::call_once(flags[device], [&] {
    C10_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  });
}

// Launches `kernel` over every tile: in shared memory when the tile fits, else on a global
// workspace for a bounded number of thread blocks.
template <auto kernel, typename scalar_t>
void launch(Params<scalar_t> prm, int64_t num_tasks, const at::Tensor& like) {
  int device = 0, max_shared = 0, sms = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  C10_CUDA_CHECK(
      cudaDeviceGetAttribute(&max_shared, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const int64_t static_shared = static_cast<int64_t>(sizeof(LevelTable));
  int64_t grid = std::min<int64_t>(num_tasks, std::numeric_limits<int32_t>::max());
  int64_t dynamic_shared = prm.layout.total;
  at::Tensor workspace;
  if (prm.layout.total + static_shared > max_shared) {
    constexpr int64_t kWorkspaceBudget = int64_t(1) << 29;  // bytes
    grid = std::min({grid, 4 * static_cast<int64_t>(sms),
                     std::max<int64_t>(1, kWorkspaceBudget / prm.layout.total)});
    workspace = at::empty({grid * prm.layout.total}, like.options().dtype(at::kByte));
    prm.workspace = workspace.data_ptr<unsigned char>();
    dynamic_shared = 0;
  } else {
    allow_all_shared_memory<kernel>(device, max_shared - static_cast<int>(static_shared));
  }
  kernel<<<static_cast<unsigned int>(grid), kThreads, static_cast<size_t>(dynamic_shared),
           cuda::current_stream()>>>(prm, num_tasks);
  FASTSER_CUDA_LAUNCH_CHECK();
}

template <typename scalar_t>
Params<scalar_t> make_params(const Geometry& g, const at::Tensor* inputs, int count,
                             const at::Tensor& lengths) {
  Params<scalar_t> prm{};
  for (int x = 0; x < count; ++x) {
    prm.in[x] = strided<scalar_t>(inputs[x]);
  }
  prm.lengths = lengths.defined() ? lengths.data_ptr<int64_t>() : nullptr;
  prm.batch = g.batch;
  prm.time = g.time;
  prm.heads = g.heads;
  prm.dim = g.dim;
  prm.p = g.p;
  prm.levels = g.levels;
  prm.top_multiplicity = g.top_multiplicity;
  prm.block_frames = g.block_frames;
  prm.num_blocks = g.num_blocks;
  prm.pooled_frames = g.pooled_frames;
  prm.scale = static_cast<float>(g.scale);
  prm.layout = make_layout(g, count, sizeof(scalar_t));
  prm.vector_loads = vector_loads_ok(prm, count);
  prm.workspace = nullptr;
  return prm;
}

// A tile's elements (block_frames * D) are indexed with 32-bit integers by loops that step by
// up to kThreads, so the count stays kThreads below INT32_MAX: the last step cannot overflow.
constexpr int64_t kMaxTileElements = std::numeric_limits<int32_t>::max() - kThreads;

void check_tile_size(const char* op, const Geometry& g) {
  FASTSER_CHECK(g.block_frames * g.dim <= kMaxTileElements, op, "a block of ", g.block_frames,
                " frames of D = ", g.dim, " is too large for the CUDA kernel (p^levels, or T "
                "when that is smaller, times D must be at most ", kMaxTileElements, ")");
}

at::Tensor lengths_on_device(const std::optional<at::Tensor>& lengths) {
  return lengths.has_value() ? lengths->contiguous() : at::Tensor();
}

at::Tensor fractal_attention_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                  const std::optional<at::Tensor>& lengths, int64_t p,
                                  int64_t levels, std::optional<double> scale) {
  const Geometry g = check_and_plan(kForwardOp, q, k, v, lengths, p, levels, scale);
  const c10::cuda::CUDAGuard guard(q.device());
  at::Tensor out = at::empty(q.sizes(), q.options());
  if (out.numel() == 0) {
    return out;
  }
  check_tile_size(kForwardOp, g);
  const at::Tensor inputs[3] = {with_unit_last_stride(q), with_unit_last_stride(k),
                                with_unit_last_stride(v)};
  const at::Tensor lens = lengths_on_device(lengths);
  FASTSER_DISPATCH_CUDA_FLOATING_TYPES(q.scalar_type(), "fractal_attention_cuda", [&] {
    Params<scalar_t> prm = make_params<scalar_t>(g, inputs, 3, lens);
    prm.out[0] = out.data_ptr<scalar_t>();
    launch<fractal_forward_kernel<scalar_t>>(prm, g.num_tiles(), q);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fractal_attention_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const std::optional<at::Tensor>& lengths, int64_t p, int64_t levels,
    std::optional<double> scale) {
  const Geometry g = check_and_plan(kBackwardOp, q, k, v, lengths, p, levels, scale, &grad_out);
  const c10::cuda::CUDAGuard guard(q.device());
  at::Tensor dq = at::empty(q.sizes(), q.options());
  at::Tensor dk = at::empty(q.sizes(), q.options());
  at::Tensor dv = at::empty(q.sizes(), q.options());
  if (dq.numel() == 0) {
    return {dq, dk, dv};
  }
  check_tile_size(kBackwardOp, g);
  const at::Tensor inputs[4] = {with_unit_last_stride(q), with_unit_last_stride(k),
                                with_unit_last_stride(v), with_unit_last_stride(grad_out)};
  const at::Tensor lens = lengths_on_device(lengths);
  FASTSER_DISPATCH_CUDA_FLOATING_TYPES(q.scalar_type(), "fractal_attention_backward_cuda", [&] {
    Params<scalar_t> prm = make_params<scalar_t>(g, inputs, 4, lens);
    prm.out[0] = dq.data_ptr<scalar_t>();
    prm.out[1] = dk.data_ptr<scalar_t>();
    prm.out[2] = dv.data_ptr<scalar_t>();
    launch<fractal_backward_kernel<scalar_t>>(prm, g.num_tiles(), q);
  });
  return {dq, dk, dv};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastser, CUDA, m) {
  m.impl("fractal_attention", &fractal_attention_cuda);
  m.impl("fractal_attention_backward", &fractal_attention_backward_cuda);
}

}  // namespace fastser::fractal
