// CPU kernels of the fractal attention op (docs/ops.md, fractal_attention).
//
// One task per (sequence, block, head) tile.  at::parallel_for starts one worker per thread;
// each worker owns one workspace and pulls tiles from a shared counter until none are left, so
// ragged batches stay balanced and results never depend on the thread that ran a tile.  A tile
// reads its q, k, v rows once, builds the pooled levels in the workspace, and writes each output
// row once; the backward pass recomputes the tile's forward values instead of storing them.
#include "fractal_attention/fractal_attention.h"

#include "common/cpu_vec.h"
#include "common/dispatch.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <limits>
#include <type_traits>
#include <vector>

namespace fastser::fractal {
namespace {

using cpu::row_axpy;
using cpu::row_convert;
using cpu::row_dot;
using cpu::row_fill;
using cpu::row_scaled_copy;

// Rows of one level of a tile: row i starts at base + i * stride.
template <typename T>
struct Rows {
  T* base = nullptr;
  int64_t stride = 0;

  T* operator[](int64_t i) const { return base + i * stride; }
};

// A (B, T, H, D) tensor whose last dimension is unit-strided.
template <typename T>
struct Strided {
  T* data;
  int64_t batch_stride, time_stride, head_stride;

  explicit Strided(const at::Tensor& t)
      : data(static_cast<T*>(t.data_ptr())),
        batch_stride(t.stride(0)),
        time_stride(t.stride(1)),
        head_stride(t.stride(2)) {}

  Rows<T> tile(int64_t b, int64_t t0, int64_t h) const {
    return {data + b * batch_stride + t0 * time_stride + h * head_stride, time_stride};
  }
};

// Where a task's tile lies.
struct Tile {
  int64_t b, h, t0;
  int64_t rows;   // frames of the block inside the padded sequence
  int64_t valid;  // frames of the block before the sequence's length
};

Tile locate(const Geometry& g, const int64_t* lengths, int64_t task) {
  Tile tile;
  tile.h = task % g.heads;
  const int64_t block = (task / g.heads) % g.num_blocks;
  tile.b = task / (g.heads * g.num_blocks);
  tile.t0 = block * g.block_frames;
  tile.rows = std::min(g.block_frames, g.time - tile.t0);
  const int64_t length = lengths != nullptr ? lengths[tile.b] : g.time;
  tile.valid = std::clamp<int64_t>(length - tile.t0, 0, tile.rows);
  return tile;
}

// Frames of each level of a tile, and where levels 2.. start in the pooled buffers (rows).
struct LevelTable {
  int64_t frames[kMaxLevels];
  int64_t pooled_offset[kMaxLevels];

  LevelTable(int64_t valid, const Geometry& g) {
    frames[0] = valid;
    pooled_offset[0] = 0;
    int64_t offset = 0;
    for (int64_t j = 1; j < g.levels; ++j) {
      frames[j] = level_above(frames[j - 1], g.p);
      pooled_offset[j] = offset;
      offset += frames[j];
    }
  }
};

// A thread's workspace: named slices of one allocation, reused by all of its tiles.  Neither
// copied nor moved, so the slices handed out stay valid.
template <typename acc>
class Workspace {
 public:
  explicit Workspace(int64_t size) : storage_(static_cast<size_t>(size)) {}
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;

  acc* take(int64_t size) {
    acc* slice = storage_.data() + used_;
    used_ += size;
    TORCH_INTERNAL_ASSERT(used_ <= static_cast<int64_t>(storage_.size()));
    return slice;
  }

 private:
  std::vector<acc> storage_;
  int64_t used_ = 0;
};

// Runs fn(task, next, buffers) for every task; each worker makes its buffers once and takes the
// tasks in runs of `run` consecutive ones (the heads of one block), so that it knows its next
// task (`next`, or -1 at the end of a run) and can prefetch that task's rows.  Small calls
// (below at::internal::GRAIN_SIZE elements per worker) use fewer threads, down to none.
template <typename MakeBuffers, typename Fn>
void for_each_tile(const Geometry& g, const MakeBuffers& make_buffers, const Fn& fn) {
  const int64_t num_tasks = g.num_tiles(), run = g.heads;
  const int64_t num_runs = ceil_div(num_tasks, run);
  const int64_t elements = g.batch * g.time * g.heads * g.dim;
  const int64_t workers =
      std::min({static_cast<int64_t>(at::get_num_threads()), num_runs,
                std::max<int64_t>(1, elements / at::internal::GRAIN_SIZE)});
  std::atomic<int64_t> next_run{0};
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    auto buffers = make_buffers();
    for (int64_t r = next_run.fetch_add(1); r < num_runs; r = next_run.fetch_add(1)) {
      const int64_t end = std::min(num_tasks, (r + 1) * run);
      for (int64_t task = r * run; task < end; ++task) {
        fn(task, task + 1 < end ? task + 1 : -1, buffers);
      }
    }
  });
}

// The input rows of the task a worker runs next, prefetched one frame at a time while the
// current tile computes its level 1.
template <typename scalar_t, int kInputs>
struct NextTile {
  Rows<const scalar_t> inputs[kInputs];
  int64_t valid = 0;

  FASTSER_CPU_INLINE void prefetch_frame(int64_t i, int64_t dim) const {
    if (i < valid) {
      for (const auto& rows : inputs) {
        cpu::prefetch(rows[i], dim * static_cast<int64_t>(sizeof(scalar_t)));
      }
    }
  }
};

// Level-1 rows in the accumulation type: the input itself when it already has that type,
// else converted into `staging`.
template <typename acc, typename scalar_t>
FASTSER_CPU_INLINE Rows<const acc> level_one(Rows<const scalar_t> rows, int64_t frames,
                                             int64_t dim, acc* staging) {
  if constexpr (std::is_same_v<acc, scalar_t>) {
    return rows;
  } else {
    for (int64_t i = 0; i < frames; ++i) {
      row_convert(staging + i * dim, rows[i], dim);
    }
    return {staging, dim};
  }
}

// Rows of the level above `below` (n frames): each the sum, or the mean when `mean`, of a group
// of p consecutive rows (the last group may be shorter).
template <typename acc>
FASTSER_CPU_INLINE void pool_level(Rows<acc> above, Rows<const acc> below, int64_t n, int64_t p,
                                   int64_t dim, bool mean) {
  for (int64_t first = 0, i = 0; first < n; first += p, ++i) {
    const int64_t count = group_size(first, n, p);
    acc* dst = above[i];
    row_convert(dst, below[first], dim);
    for (int64_t c = 1; c < count; ++c) {
      row_axpy(dst, acc(1), below[first + c], dim);
    }
    if (mean && count > 1) {
      cpu::row_scale(dst, acc(1) / static_cast<acc>(count), dim);
    }
  }
}

// The q, k, v rows of one level.
template <typename acc>
struct LevelRows {
  Rows<const acc> q, k, v;
  int64_t frames;
};

// Query rows are processed in chunks of this many rows, one phase at a time (scores, softmax,
// Y, GELU, ...), so that each phase runs many independent row operations.
constexpr int64_t kChunkRows = 32;

// Per chunk: the softmax weights of each query row over its window (row r at r * stride) and
// the attention output Y (row r at r * dim).
template <typename acc>
struct ChunkBuffers {
  acc* weights;
  int64_t stride;
  acc* y;
};

// weights and Y of query rows [r0, r1) of level `lv`.
template <typename acc>
FASTSER_CPU_INLINE void chunk_attention(const LevelRows<acc>& lv, int64_t r0, int64_t r1,
                                        int64_t p, acc scale, int64_t dim,
                                        const ChunkBuffers<acc>& chunk) {
  for (int64_t i = r0; i < r1; ++i) {
    const int64_t first = i / p * p, count = group_size(first, lv.frames, p);
    acc* w = chunk.weights + (i - r0) * chunk.stride;
    for (int64_t c = 0; c < count; ++c) {
      w[c] = scale * row_dot(lv.q[i], lv.k[first + c], dim);
    }
  }
  for (int64_t i = r0; i < r1; ++i) {
    const int64_t count = group_size(i / p * p, lv.frames, p);
    acc* w = chunk.weights + (i - r0) * chunk.stride;
    acc top = -std::numeric_limits<acc>::infinity();
    for (int64_t c = 0; c < count; ++c) {
      top = w[c] > top ? w[c] : top;
    }
    acc total = 0;
    for (int64_t c = 0; c < count; ++c) {
      w[c] = cpu::exp_bounded(w[c] - top);
      total += w[c];
    }
    const acc inverse = acc(1) / total;
    for (int64_t c = 0; c < count; ++c) {
      w[c] *= inverse;
    }
  }
  for (int64_t i = r0; i < r1; ++i) {
    const int64_t first = i / p * p, count = group_size(first, lv.frames, p);
    const acc* w = chunk.weights + (i - r0) * chunk.stride;
    acc* y = chunk.y + (i - r0) * dim;
    row_scaled_copy(y, w[0], lv.v[first], dim);
    for (int64_t c = 1; c < count; ++c) {
      row_axpy(y, w[c], lv.v[first + c], dim);
    }
  }
}

// dst = weight * GELU(y) at the top level (no parent), dst = GELU(y) + parent below it.
template <typename T, typename acc>
FASTSER_CPU_INLINE void gelu_sum(T* dst, const acc* __restrict y, const acc* __restrict parent,
                                 acc weight, int64_t dim) {
  cpu::storage_t<T>* __restrict out = cpu::storage(dst);
  if (parent == nullptr) {
#pragma omp simd
    for (int64_t d = 0; d < dim; ++d) {
      out[d] = cpu::encode<T>(weight * cpu::gelu(y[d]));
    }
  } else {
#pragma omp simd
    for (int64_t d = 0; d < dim; ++d) {
      out[d] = cpu::encode<T>(cpu::gelu(y[d]) + parent[d]);
    }
  }
}

template <typename T>
void zero_rows(Rows<T> rows, int64_t from, int64_t to, int64_t dim) {
  for (int64_t f = from; f < to; ++f) {
    row_fill(rows[f], T(0), dim);
  }
}

// --- forward --------------------------------------------------------------------------------

template <typename scalar_t>
struct ForwardArgs {
  Geometry g;
  Strided<const scalar_t> q, k, v;
  Strided<scalar_t> out;
  const int64_t* lengths;
};

template <typename acc>
struct ForwardBuffers {
  Workspace<acc> space;
  acc* staged[3];  // level-1 q, k, v converted to acc (float16/bfloat16 inputs)
  acc* pooled[3];  // levels 2.. of q, k, v
  acc* sums;       // levels 2..: GELU(Y) of the level plus the sums of the levels above
  ChunkBuffers<acc> chunk;

  ForwardBuffers(const Geometry& g, bool stage)
      : space((stage ? 3 * g.block_frames * g.dim : 0) + 4 * g.pooled_frames * g.dim +
              kChunkRows * (g.p + g.dim)) {
    for (int x = 0; x < 3; ++x) {
      staged[x] = stage ? space.take(g.block_frames * g.dim) : nullptr;
      pooled[x] = space.take(g.pooled_frames * g.dim);
    }
    sums = space.take(g.pooled_frames * g.dim);
    chunk = {space.take(kChunkRows * g.p), g.p,
             space.take(kChunkRows * g.dim)};
  }

  Rows<acc> level(acc* buffer, const LevelTable& table, int64_t j, int64_t dim) const {
    return {buffer + table.pooled_offset[j] * dim, dim};
  }
};

template <typename scalar_t>
FASTSER_CPU_MULTIVERSION void forward_tile(const ForwardArgs<scalar_t>& a, int64_t task,
                                           int64_t next_task,
                                           ForwardBuffers<acc_t<scalar_t>>& buf) {
  using acc = acc_t<scalar_t>;
  const Geometry& g = a.g;
  const int64_t dim = g.dim, p = g.p, top = g.levels - 1;
  const Tile tile = locate(g, a.lengths, task);
  const Rows<scalar_t> out = a.out.tile(tile.b, tile.t0, tile.h);
  zero_rows(out, tile.valid, tile.rows, dim);
  if (tile.valid == 0) {
    return;
  }
  const LevelTable table(tile.valid, g);
  NextTile<scalar_t, 3> next;
  if (next_task >= 0) {
    const Tile n = locate(g, a.lengths, next_task);
    next = {{a.q.tile(n.b, n.t0, n.h), a.k.tile(n.b, n.t0, n.h), a.v.tile(n.b, n.t0, n.h)},
            n.valid};
  }

  // Level j's q, k, v rows; levels 2.. pooled from level 1 upwards.
  Rows<const acc> qkv[kMaxLevels][3];
  const Strided<const scalar_t>* inputs[3] = {&a.q, &a.k, &a.v};
  for (int x = 0; x < 3; ++x) {
    qkv[0][x] = level_one<acc>(inputs[x]->tile(tile.b, tile.t0, tile.h), tile.valid, dim,
                               buf.staged[x]);
    for (int64_t j = 1; j <= top; ++j) {
      const Rows<acc> above = buf.level(buf.pooled[x], table, j, dim);
      pool_level<acc>(above, qkv[j - 1][x], table.frames[j - 1], p, dim, /*mean=*/true);
      qkv[j][x] = {above.base, above.stride};
    }
  }

  // From the top level down: sums_j[i] = GELU(Y_j[i]) + sums_{j+1}[i / p]; level 1's sums are
  // the output rows.
  const acc scale = static_cast<acc>(g.scale);
  for (int64_t j = top; j >= 0; --j) {
    const LevelRows<acc> lv{qkv[j][0], qkv[j][1], qkv[j][2], table.frames[j]};
    const Rows<acc> sums = j > 0 ? buf.level(buf.sums, table, j, dim) : Rows<acc>{};
    const Rows<acc> parents = j < top ? buf.level(buf.sums, table, j + 1, dim) : Rows<acc>{};
    const acc weight = j == top ? static_cast<acc>(g.top_multiplicity) : acc(1);
    for (int64_t r0 = 0; r0 < lv.frames; r0 += kChunkRows) {
      const int64_t r1 = std::min(lv.frames, r0 + kChunkRows);
      chunk_attention(lv, r0, r1, p, scale, dim, buf.chunk);
      for (int64_t i = r0; i < r1; ++i) {
        const acc* y = buf.chunk.y + (i - r0) * dim;
        const acc* parent = j < top ? parents[i / p] : nullptr;
        if (j > 0) {
          gelu_sum(sums[i], y, parent, weight, dim);
        } else {
          gelu_sum(out[i], y, parent, weight, dim);
          next.prefetch_frame(i, dim);
        }
      }
    }
  }
}

// --- backward -------------------------------------------------------------------------------

template <typename scalar_t>
struct BackwardArgs {
  Geometry g;
  Strided<const scalar_t> grad_out, q, k, v;
  Strided<scalar_t> dq, dk, dv;
  const int64_t* lengths;
};

template <typename acc>
struct BackwardBuffers {
  Workspace<acc> space;
  acc* staged[4];  // level-1 q, k, v, grad_out converted to acc (float16/bfloat16 inputs)
  acc* pooled[4];  // levels 2.. of q, k, v (means) and of grad_out (sums)
  acc* grads[3];   // dq, dk, dv of every level: level 1 in rows [0, block_frames)
  ChunkBuffers<acc> chunk;  // y holds dY once it is known
  acc* dscores;             // like chunk.weights

  BackwardBuffers(const Geometry& g, bool stage)
      : space((stage ? 4 * g.block_frames * g.dim : 0) + 4 * g.pooled_frames * g.dim +
              3 * (g.block_frames + g.pooled_frames) * g.dim +
              kChunkRows * (2 * g.p + g.dim)) {
    for (int x = 0; x < 4; ++x) {
      staged[x] = stage ? space.take(g.block_frames * g.dim) : nullptr;
      pooled[x] = space.take(g.pooled_frames * g.dim);
    }
    for (int x = 0; x < 3; ++x) {
      grads[x] = space.take((g.block_frames + g.pooled_frames) * g.dim);
    }
    chunk = {space.take(kChunkRows * g.p), g.p,
             space.take(kChunkRows * g.dim)};
    dscores = space.take(kChunkRows * g.p);
  }

  Rows<acc> level(acc* buffer, const LevelTable& table, int64_t j, int64_t dim) const {
    return {buffer + table.pooled_offset[j] * dim, dim};
  }

  Rows<acc> grad_level(int x, const LevelTable& table, int64_t j, int64_t block_frames,
                       int64_t dim) const {
    const int64_t first_row = j == 0 ? 0 : block_frames + table.pooled_offset[j];
    return {grads[x] + first_row * dim, dim};
  }
};

template <typename scalar_t>
FASTSER_CPU_MULTIVERSION void backward_tile(const BackwardArgs<scalar_t>& a, int64_t task,
                                            int64_t next_task,
                                            BackwardBuffers<acc_t<scalar_t>>& buf) {
  using acc = acc_t<scalar_t>;
  const Geometry& g = a.g;
  const int64_t dim = g.dim, p = g.p, top = g.levels - 1;
  const Tile tile = locate(g, a.lengths, task);
  const Rows<scalar_t> outputs[3] = {a.dq.tile(tile.b, tile.t0, tile.h),
                                     a.dk.tile(tile.b, tile.t0, tile.h),
                                     a.dv.tile(tile.b, tile.t0, tile.h)};
  for (const auto& rows : outputs) {
    zero_rows(rows, tile.valid, tile.rows, dim);
  }
  if (tile.valid == 0) {
    return;
  }
  const LevelTable table(tile.valid, g);
  NextTile<scalar_t, 4> next;
  if (next_task >= 0) {
    const Tile n = locate(g, a.lengths, next_task);
    next = {{a.q.tile(n.b, n.t0, n.h), a.k.tile(n.b, n.t0, n.h), a.v.tile(n.b, n.t0, n.h),
             a.grad_out.tile(n.b, n.t0, n.h)},
            n.valid};
  }

  // Level j's q, k, v (means) and S = the sum of grad_out over the frames a row stands for.
  Rows<const acc> rows[kMaxLevels][4];
  const Strided<const scalar_t>* inputs[4] = {&a.q, &a.k, &a.v, &a.grad_out};
  for (int x = 0; x < 4; ++x) {
    rows[0][x] = level_one<acc>(inputs[x]->tile(tile.b, tile.t0, tile.h), tile.valid, dim,
                                buf.staged[x]);
    for (int64_t j = 1; j <= top; ++j) {
      const Rows<acc> above = buf.level(buf.pooled[x], table, j, dim);
      pool_level<acc>(above, rows[j - 1][x], table.frames[j - 1], p, dim, /*mean=*/x < 3);
      rows[j][x] = {above.base, above.stride};
    }
  }

  // From the top level down: each level's gradient rows start as the level above's (a mean
  // passes 1/count of its gradient to each member) and gather the level's attention terms.
  const acc scale = static_cast<acc>(g.scale);
  for (int64_t j = top; j >= 0; --j) {
    const LevelRows<acc> lv{rows[j][0], rows[j][1], rows[j][2], table.frames[j]};
    const Rows<const acc> s = rows[j][3];
    const int64_t n = lv.frames;
    Rows<acc> grad[3];
    for (int x = 0; x < 3; ++x) {
      grad[x] = buf.grad_level(x, table, j, g.block_frames, dim);
      if (j == top) {
        zero_rows(grad[x], 0, n, dim);
        continue;
      }
      const Rows<acc> above = buf.grad_level(x, table, j + 1, g.block_frames, dim);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t group = i / p;
        const acc share = acc(1) / static_cast<acc>(group_size(group * p, n, p));
        row_scaled_copy(grad[x][i], share, above[group], dim);
      }
    }
    const acc weight = j == top ? static_cast<acc>(g.top_multiplicity) : acc(1);
    for (int64_t r0 = 0; r0 < n; r0 += kChunkRows) {
      const int64_t r1 = std::min(n, r0 + kChunkRows);
      chunk_attention(lv, r0, r1, p, scale, dim, buf.chunk);
      // dY = weight * S * GELU'(Y), in place of Y.
      for (int64_t i = r0; i < r1; ++i) {
        acc* y = buf.chunk.y + (i - r0) * dim;
        const acc* s_i = s[i];
#pragma omp simd
        for (int64_t d = 0; d < dim; ++d) {
          y[d] = weight * s_i[d] * cpu::gelu_grad(y[d]);
        }
      }
      // dscore_c = scale * w_c * (dY . V_c - sum_c' w_c' dY . V_c')
      for (int64_t i = r0; i < r1; ++i) {
        const int64_t first = i / p * p, count = group_size(first, n, p);
        const acc* w = buf.chunk.weights + (i - r0) * buf.chunk.stride;
        acc* ds = buf.dscores + (i - r0) * buf.chunk.stride;
        const acc* dy = buf.chunk.y + (i - r0) * dim;
        acc mean = 0;
        for (int64_t c = 0; c < count; ++c) {
          ds[c] = row_dot(dy, lv.v[first + c], dim);
          mean += w[c] * ds[c];
        }
        for (int64_t c = 0; c < count; ++c) {
          ds[c] = scale * w[c] * (ds[c] - mean);
        }
      }
      for (int64_t i = r0; i < r1; ++i) {
        const int64_t first = i / p * p, count = group_size(first, n, p);
        const acc* w = buf.chunk.weights + (i - r0) * buf.chunk.stride;
        const acc* ds = buf.dscores + (i - r0) * buf.chunk.stride;
        const acc* dy = buf.chunk.y + (i - r0) * dim;
        for (int64_t c = 0; c < count; ++c) {
          const int64_t m = first + c;
          row_axpy(grad[0][i], ds[c], lv.k[m], dim);
          row_axpy(grad[1][m], ds[c], lv.q[i], dim);
          row_axpy(grad[2][m], w[c], dy, dim);
        }
        if (j == 0) {
          next.prefetch_frame(i, dim);
        }
      }
    }
  }
  for (int x = 0; x < 3; ++x) {
    const Rows<acc> grad = buf.grad_level(x, table, 0, g.block_frames, dim);
    for (int64_t f = 0; f < tile.valid; ++f) {
      row_convert(outputs[x][f], grad[f], dim);
    }
  }
}

// --- entry points ---------------------------------------------------------------------------

const int64_t* lengths_data(const at::Tensor& lengths) {
  return lengths.defined() ? lengths.data_ptr<int64_t>() : nullptr;
}

at::Tensor lengths_on_host(const std::optional<at::Tensor>& lengths) {
  return lengths.has_value() ? lengths->contiguous() : at::Tensor();
}

at::Tensor fractal_attention_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const std::optional<at::Tensor>& lengths, int64_t p,
                                 int64_t levels, std::optional<double> scale) {
  const Geometry g = check_and_plan(kForwardOp, q, k, v, lengths, p, levels, scale);
  at::Tensor out = at::empty(q.sizes(), q.options());
  if (out.numel() == 0) {
    return out;
  }
  const at::Tensor qs = with_unit_last_stride(q), ks = with_unit_last_stride(k),
                   vs = with_unit_last_stride(v), lens = lengths_on_host(lengths);
  FASTSER_DISPATCH_FLOATING_TYPES(q.scalar_type(), "fractal_attention_cpu", [&] {
    using acc = acc_t<scalar_t>;
    const ForwardArgs<scalar_t> args{g, Strided<const scalar_t>(qs), Strided<const scalar_t>(ks),
                                     Strided<const scalar_t>(vs), Strided<scalar_t>(out),
                                     lengths_data(lens)};
    for_each_tile(
        g, [&] { return ForwardBuffers<acc>(g, !std::is_same_v<acc, scalar_t>); },
        [&](int64_t task, int64_t next, ForwardBuffers<acc>& buf) {
          forward_tile(args, task, next, buf);
        });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fractal_attention_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const std::optional<at::Tensor>& lengths, int64_t p, int64_t levels,
    std::optional<double> scale) {
  const Geometry g = check_and_plan(kBackwardOp, q, k, v, lengths, p, levels, scale, &grad_out);
  at::Tensor dq = at::empty(q.sizes(), q.options());
  at::Tensor dk = at::empty(q.sizes(), q.options());
  at::Tensor dv = at::empty(q.sizes(), q.options());
  if (dq.numel() == 0) {
    return {dq, dk, dv};
  }
  const at::Tensor gs = with_unit_last_stride(grad_out), qs = with_unit_last_stride(q),
                   ks = with_unit_last_stride(k), vs = with_unit_last_stride(v),
                   lens = lengths_on_host(lengths);
  FASTSER_DISPATCH_FLOATING_TYPES(q.scalar_type(), "fractal_attention_backward_cpu", [&] {
    using acc = acc_t<scalar_t>;
    const BackwardArgs<scalar_t> args{
        g, Strided<const scalar_t>(gs), Strided<const scalar_t>(qs),
        Strided<const scalar_t>(ks), Strided<const scalar_t>(vs), Strided<scalar_t>(dq),
        Strided<scalar_t>(dk), Strided<scalar_t>(dv), lengths_data(lens)};
    for_each_tile(
        g, [&] { return BackwardBuffers<acc>(g, !std::is_same_v<acc, scalar_t>); },
        [&](int64_t task, int64_t next, BackwardBuffers<acc>& buf) {
          backward_tile(args, task, next, buf);
        });
  });
  return {dq, dk, dv};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastser, CPU, m) {
  m.impl("fractal_attention", &fractal_attention_cpu);
  m.impl("fractal_attention_backward", &fractal_attention_backward_cpu);
}

}  // namespace fastser::fractal
