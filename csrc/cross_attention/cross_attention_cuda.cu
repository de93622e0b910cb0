// CUDA kernels of fastser::cross_attention (docs/ops.md, cross_attention).
//
// One block per (b, h) (blocks stride over the pairs past the grid limit); its warps take every
// warps-th frame, each lane holding d/32 (rounded up) values of a row in registers, so loads are
// coalesced and float16/bfloat16 are widened to the float32 accumulation type on load.  Forward:
// per warp, an online softmax per modality (running max and sum, rescaled self and crossed
// accumulators); the warps' states are merged in shared memory in a fixed order.  Backward, in
// two phases: the first reads h once, recomputing the forward's weights from the saved max and
// sum and accumulating per warp Δ = Σ α <g, h>, U = Σ α <g, h> h and C = Σ α h
// (dq = scale·(U − Δ·C)), with per-frame scalars kept in a global scratch; after merging the
// warps in a fixed order, the second writes dh for every frame (0 past n) from those scalars.
// dq partials per (b, h) are summed over b in increasing order by a second kernel: no atomics,
// so results are deterministic.
#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "common/dispatch.h"
#include "cross_attention/cross_attention.h"

#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <tuple>
#include <type_traits>

namespace fastser::cross_attention {
namespace {

constexpr int kWarp = 32;
constexpr int kMaxWarps = 8;
constexpr int64_t kMaxSharedBytes = 48 * 1024;
constexpr int kReduceThreads = 256;

// Strides (in elements) of a (B, L, H, d) tensor whose last dimension has unit stride.
struct FrameStrides {
  int64_t b, l, h;
};

FrameStrides frame_strides(const at::Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2)}; }

template <typename scalar_t>
struct ForwardParams {
  using acc = acc_t<scalar_t>;
  const scalar_t* h_text;
  const scalar_t* h_audio;
  FrameStrides text_strides, audio_strides;
  const acc* queries;      // (2, H, d): scale·q_text, scale·q_audio
  const int64_t* lengths;  // (B,) or null
  int64_t batch, frames, heads, dim;
  scalar_t* contexts[4];  // c_tt, c_ta, c_aa, c_at: (B, H, d)
  acc* stats;             // (2, B, H, 2): max score, Σ exp(score − max)
};

template <typename scalar_t>
struct BackwardParams {
  using acc = acc_t<scalar_t>;
  const scalar_t* grads[4];  // d c_tt, d c_ta, d c_aa, d c_at: (B, H, d) or null (zero)
  const scalar_t* h_text;
  const scalar_t* h_audio;
  FrameStrides text_strides, audio_strides;
  const acc* queries;  // (2, H, d): scale·q_text, scale·q_audio
  const int64_t* lengths;
  const acc* stats;  // (2, B, H, 2)
  int64_t batch, frames, heads, dim;
  acc scale;
  acc* frame_values;    // (B, H, L, 4) scratch: α_text, <g_tt, h_text>, α_audio, <g_aa, h_audio>
  scalar_t* grad_text;  // (B, L, H, d), contiguous
  scalar_t* grad_audio;
  acc* grad_q_partial;  // (2, B, H, d)
};

// This lane's values of row[0, d): row[lane + 32 j] for j < VPT (0 past d).
template <int VPT, typename acc, typename scalar_t>
__device__ __forceinline__ void load_row(const scalar_t* __restrict__ row, int64_t d, int lane,
                                         acc (&out)[VPT]) {
#pragma unroll
  for (int j = 0; j < VPT; ++j) {
    const int64_t k = lane + kWarp * j;
    out[j] = k < d ? static_cast<acc>(row[k]) : acc(0);
  }
}

// row[lane + 32 j] = values[j] for j < VPT (where inside d).
template <int VPT, typename acc, typename scalar_t>
__device__ __forceinline__ void store_row(const acc (&values)[VPT], int64_t d, int lane,
                                          scalar_t* __restrict__ row) {
#pragma unroll
  for (int j = 0; j < VPT; ++j) {
    const int64_t k = lane + kWarp * j;
    if (k < d) {
      row[k] = static_cast<scalar_t>(values[j]);
    }
  }
}

// x·y rounded on its own: never fused into a following addition (float32: the accumulation type
// of every CUDA dtype).
__device__ __forceinline__ float rounded_product(float x, float y) { return __fmul_rn(x, y); }

// <x, y> over the warp's row: each lane's products summed as a pairwise tree, then across the
// lanes.  Every lane gets the same bits (the xor butterfly adds each pair in both orders), and
// no multiply-add fusion depends on the surrounding code, so the forward's and the backward's
// scores agree bit for bit.
template <int VPT, typename acc>
__device__ __forceinline__ acc warp_dot(const acc (&x)[VPT], const acc (&y)[VPT]) {
  acc products[VPT];
#pragma unroll
  for (int j = 0; j < VPT; ++j) {
    products[j] = rounded_product(x[j], y[j]);
  }
#pragma unroll
  for (int width = VPT / 2; width > 0; width /= 2) {
#pragma unroll
    for (int j = 0; j < width; ++j) {
      products[j] += products[j + width];
    }
  }
  return cuda::warp_sum(products[0]);
}

// Online softmax step: folds in `score`; when the max grows, rescales the sum and the two
// accumulators.  Returns the frame's weight exp(score - max).
template <int VPT, typename acc>
__device__ __forceinline__ acc online_add(acc score, acc& running_max, acc& running_sum,
                                          acc (&self_acc)[VPT], acc (&cross_acc)[VPT]) {
  if (score > running_max) {
    const acc rescale = exp(running_max - score);
    running_sum *= rescale;
#pragma unroll
    for (int j = 0; j < VPT; ++j) {
      self_acc[j] *= rescale;
      cross_acc[j] *= rescale;
    }
    running_max = score;
  }
  const acc weight = exp(score - running_max);
  running_sum += weight;
  return weight;
}

// The forward of one (b, h) pair (bh = b·H + h), by the whole block.
template <typename scalar_t, int VPT>
__device__ void forward_pair(const ForwardParams<scalar_t>& p, int64_t bh) {
  using acc = acc_t<scalar_t>;
  const int64_t b = bh / p.heads, h = bh % p.heads, d = p.dim;
  const int lane = threadIdx.x, warp = threadIdx.y, warps = blockDim.y;
  const int64_t n = p.lengths == nullptr ? p.frames : p.lengths[b];
  FASTSER_DEVICE_ASSERT(blockDim.x == kWarp && n >= 1 && n <= p.frames);

  acc q_text[VPT], q_audio[VPT];
  load_row(p.queries + h * d, d, lane, q_text);
  load_row(p.queries + (p.heads + h) * d, d, lane, q_audio);
  acc tt[VPT] = {}, ta[VPT] = {}, aa[VPT] = {}, at[VPT] = {};
  acc max_text = -std::numeric_limits<acc>::infinity(), sum_text = 0;
  acc max_audio = -std::numeric_limits<acc>::infinity(), sum_audio = 0;
  const scalar_t* text = p.h_text + b * p.text_strides.b + h * p.text_strides.h;
  const scalar_t* audio = p.h_audio + b * p.audio_strides.b + h * p.audio_strides.h;
  for (int64_t i = warp; i < n; i += warps) {
    acc t[VPT], a[VPT];
    load_row(text + i * p.text_strides.l, d, lane, t);
    load_row(audio + i * p.audio_strides.l, d, lane, a);
    const acc w_text = online_add(warp_dot(q_text, t), max_text, sum_text, tt, ta);
    const acc w_audio = online_add(warp_dot(q_audio, a), max_audio, sum_audio, aa, at);
#pragma unroll
    for (int j = 0; j < VPT; ++j) {
      tt[j] += w_text * t[j];
      ta[j] += w_text * a[j];
      aa[j] += w_audio * a[j];
      at[j] += w_audio * t[j];
    }
  }

  // Merge the warps: shared memory holds each warp's (max, sum) per modality, then its four
  // accumulator rows.
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  acc* stats = reinterpret_cast<acc*>(shared_bytes);
  acc* rows = stats + 4 * warps;
  if (lane == 0) {
    stats[4 * warp] = max_text;
    stats[4 * warp + 1] = sum_text;
    stats[4 * warp + 2] = max_audio;
    stats[4 * warp + 3] = sum_audio;
  }
  store_row(tt, d, lane, rows + (4 * warp) * d);
  store_row(ta, d, lane, rows + (4 * warp + 1) * d);
  store_row(aa, d, lane, rows + (4 * warp + 2) * d);
  store_row(at, d, lane, rows + (4 * warp + 3) * d);
  __syncthreads();

  acc block_max[2] = {-std::numeric_limits<acc>::infinity(),
                      -std::numeric_limits<acc>::infinity()};
  for (int w = 0; w < warps; ++w) {
    block_max[0] = max(block_max[0], stats[4 * w]);
    block_max[1] = max(block_max[1], stats[4 * w + 2]);
  }
  acc block_sum[2] = {0, 0};
  for (int w = 0; w < warps; ++w) {
    block_sum[0] += stats[4 * w + 1] * exp(stats[4 * w] - block_max[0]);
    block_sum[1] += stats[4 * w + 3] * exp(stats[4 * w + 2] - block_max[1]);
  }
  const int tid = warp * kWarp + lane, threads = warps * kWarp;
  for (int64_t k = tid; k < d; k += threads) {
    acc merged[4] = {0, 0, 0, 0};
    for (int w = 0; w < warps; ++w) {
      const acc factor[2] = {exp(stats[4 * w] - block_max[0]),
                             exp(stats[4 * w + 2] - block_max[1])};
#pragma unroll
      for (int c = 0; c < 4; ++c) {  // tt and ta use the text weights, aa and at the audio's
        merged[c] += rows[(4 * w + c) * d + k] * factor[c / 2];
      }
    }
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      p.contexts[c][bh * d + k] = static_cast<scalar_t>(merged[c] / block_sum[c / 2]);
    }
  }
  if (tid == 0) {
    p.stats[2 * bh] = block_max[0];
    p.stats[2 * bh + 1] = block_sum[0];
    p.stats[2 * (p.batch * p.heads + bh)] = block_max[1];
    p.stats[2 * (p.batch * p.heads + bh) + 1] = block_sum[1];
  }
}

// The backward of one (b, h) pair, by the whole block.
template <typename scalar_t, int VPT>
__device__ void backward_pair(const BackwardParams<scalar_t>& p, int64_t bh) {
  using acc = acc_t<scalar_t>;
  const int64_t b = bh / p.heads, h = bh % p.heads, d = p.dim;
  const int64_t bh_count = p.batch * p.heads;
  const int lane = threadIdx.x, warp = threadIdx.y, warps = blockDim.y;
  const int64_t n = p.lengths == nullptr ? p.frames : p.lengths[b];
  FASTSER_DEVICE_ASSERT(blockDim.x == kWarp && n >= 1 && n <= p.frames);

  acc q_text[VPT], q_audio[VPT];
  load_row(p.queries + h * d, d, lane, q_text);
  load_row(p.queries + (p.heads + h) * d, d, lane, q_audio);
  acc g[4][VPT];  // d c_tt, d c_ta, d c_aa, d c_at
#pragma unroll
  for (int c = 0; c < 4; ++c) {
    if (p.grads[c] != nullptr) {
      load_row(p.grads[c] + bh * d, d, lane, g[c]);
    } else {
#pragma unroll
      for (int j = 0; j < VPT; ++j) {
        g[c][j] = 0;
      }
    }
  }
  // α_i = exp(score_i − max) / sum: exactly the forward's weights.
  const acc* text_stats = p.stats + 2 * bh;
  const acc* audio_stats = p.stats + 2 * (bh_count + bh);
  const acc max_text = text_stats[0], inv_sum_text = acc(1) / text_stats[1];
  const acc max_audio = audio_stats[0], inv_sum_audio = acc(1) / audio_stats[1];

  // Phase 1: read h once.
  acc shift_text = 0, shift_audio = 0;
  acc u_text[VPT] = {}, c_text[VPT] = {}, u_audio[VPT] = {}, c_audio[VPT] = {};
  acc* values = p.frame_values + bh * p.frames * 4;
  const scalar_t* text = p.h_text + b * p.text_strides.b + h * p.text_strides.h;
  const scalar_t* audio = p.h_audio + b * p.audio_strides.b + h * p.audio_strides.h;
  for (int64_t i = warp; i < n; i += warps) {
    acc t[VPT], a[VPT];
    load_row(text + i * p.text_strides.l, d, lane, t);
    load_row(audio + i * p.audio_strides.l, d, lane, a);
    const acc w_text = exp(warp_dot(q_text, t) - max_text) * inv_sum_text;
    const acc w_audio = exp(warp_dot(q_audio, a) - max_audio) * inv_sum_audio;
    const acc g_dot_text = warp_dot(g[0], t), g_dot_audio = warp_dot(g[2], a);
    shift_text += w_text * g_dot_text;
    shift_audio += w_audio * g_dot_audio;
#pragma unroll
    for (int j = 0; j < VPT; ++j) {
      u_text[j] += w_text * g_dot_text * t[j];
      c_text[j] += w_text * t[j];
      u_audio[j] += w_audio * g_dot_audio * a[j];
      c_audio[j] += w_audio * a[j];
    }
    if (lane == 0) {
      values[4 * i] = w_text;
      values[4 * i + 1] = g_dot_text;
      values[4 * i + 2] = w_audio;
      values[4 * i + 3] = g_dot_audio;
    }
  }

  // Merge the warps in a fixed order: shared memory holds each warp's two shifts, then its
  // U_text, C_text, U_audio, C_audio rows.
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  acc* shifts = reinterpret_cast<acc*>(shared_bytes);
  acc* rows = shifts + 2 * warps;
  if (lane == 0) {
    shifts[2 * warp] = shift_text;
    shifts[2 * warp + 1] = shift_audio;
  }
  store_row(u_text, d, lane, rows + (4 * warp) * d);
  store_row(c_text, d, lane, rows + (4 * warp + 1) * d);
  store_row(u_audio, d, lane, rows + (4 * warp + 2) * d);
  store_row(c_audio, d, lane, rows + (4 * warp + 3) * d);
  __syncthreads();  // also publishes the per-frame scratch to the whole block
  acc shift[2] = {0, 0};
  for (int w = 0; w < warps; ++w) {
    shift[0] += shifts[2 * w];
    shift[1] += shifts[2 * w + 1];
  }
  const int tid = warp * kWarp + lane, threads = warps * kWarp;
  for (int64_t k = tid; k < d; k += threads) {
    acc merged[4] = {0, 0, 0, 0};
    for (int w = 0; w < warps; ++w) {
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        merged[c] += rows[(4 * w + c) * d + k];
      }
    }
    p.grad_q_partial[bh * d + k] = p.scale * (merged[0] - shift[0] * merged[1]);
    p.grad_q_partial[(bh_count + bh) * d + k] = p.scale * (merged[2] - shift[1] * merged[3]);
  }

  // Phase 2: dh from the per-frame scalars.
  for (int64_t i = warp; i < p.frames; i += warps) {
    const int64_t out_offset = ((b * p.frames + i) * p.heads + h) * d;
    acc dt[VPT], da[VPT];
    if (i < n) {
      const acc w_text = values[4 * i], w_audio = values[4 * i + 2];
      // Score gradients of the non-crossed terms only (sg() stops the rest); with the scaled
      // queries, ds·(scale·q) is the gradient reaching h through the score.
      const acc ds_text = w_text * (values[4 * i + 1] - shift[0]);
      const acc ds_audio = w_audio * (values[4 * i + 3] - shift[1]);
#pragma unroll
      for (int j = 0; j < VPT; ++j) {
        dt[j] = w_text * g[0][j] + w_audio * g[3][j] + ds_text * q_text[j];
        da[j] = w_text * g[1][j] + w_audio * g[2][j] + ds_audio * q_audio[j];
      }
    } else {
#pragma unroll
      for (int j = 0; j < VPT; ++j) {
        dt[j] = 0;
        da[j] = 0;
      }
    }
    store_row(dt, d, lane, p.grad_text + out_offset);
    store_row(da, d, lane, p.grad_audio + out_offset);
  }
}

// One block per (b, h) pair, grid-stride (the grid is capped at the launch limit).
template <typename scalar_t, int VPT>
__global__ void __launch_bounds__(kWarp* kMaxWarps)
    cross_attention_forward_kernel(const ForwardParams<scalar_t> p) {
  for (int64_t bh = blockIdx.x; bh < p.batch * p.heads; bh += gridDim.x) {
    forward_pair<scalar_t, VPT>(p, bh);
    __syncthreads();  // the next pair reuses the shared memory
  }
}

template <typename scalar_t, int VPT>
__global__ void __launch_bounds__(kWarp* kMaxWarps)
    cross_attention_backward_kernel(const BackwardParams<scalar_t> p) {
  for (int64_t bh = blockIdx.x; bh < p.batch * p.heads; bh += gridDim.x) {
    backward_pair<scalar_t, VPT>(p, bh);
    __syncthreads();  // the next pair reuses the shared memory
  }
}

// dq[m, r] = Σ_b partial[m, b, r] (r over H·d), summed over b in increasing order.
template <typename scalar_t>
__global__ void reduce_query_grads_kernel(const acc_t<scalar_t>* __restrict__ partial,
                                          int64_t batch, int64_t row, scalar_t* grad_q_text,
                                          scalar_t* grad_q_audio) {
  using acc = acc_t<scalar_t>;
  const int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= 2 * row) {
    return;
  }
  const int64_t m = index / row, r = index % row;
  acc sum = 0;
  for (int64_t b = 0; b < batch; ++b) {
    sum += partial[(m * batch + b) * row + r];
  }
  (m == 0 ? grad_q_text : grad_q_audio)[r] = static_cast<scalar_t>(sum);
}

// Calls fn(std::integral_constant<int, VPT>) with the fewest values per lane that hold d.
template <typename Fn>
void with_values_per_lane(int64_t d, const Fn& fn) {
  if (d <= 32) {
    fn(std::integral_constant<int, 1>());
  } else if (d <= 64) {
    fn(std::integral_constant<int, 2>());
  } else if (d <= 128) {
    fn(std::integral_constant<int, 4>());
  } else if (d <= 256) {
    fn(std::integral_constant<int, 8>());
  } else if (d <= 512) {
    fn(std::integral_constant<int, 16>());
  } else {
    TORCH_INTERNAL_ASSERT(d <= kCudaMaxHeadDim);
    fn(std::integral_constant<int, 32>());
  }
}

// Warps per block: about one per 8 frames, at most kMaxWarps, and no more than the shared
// memory (shared_per_warp bytes each) allows.  Depends only on the sizes (deterministic).
int warps_for(int64_t frames, int64_t shared_per_warp) {
  int warps = static_cast<int>(std::min<int64_t>(kMaxWarps, (frames + 7) / 8));
  while (warps > 1 && warps * shared_per_warp > kMaxSharedBytes) {
    --warps;
  }
  return std::max(warps, 1);
}

// Blocks of the forward and backward kernels: one per (b, h) pair, at most the grid limit (the
// kernels stride over the rest).
unsigned int grid_for(const Sizes& s) {
  return static_cast<unsigned int>(
      std::min<int64_t>(s.batch * s.heads, std::numeric_limits<int32_t>::max()));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> cross_attention_cuda(
    const at::Tensor& h_text_in, const at::Tensor& h_audio_in, const at::Tensor& q_text,
    const at::Tensor& q_audio, const std::optional<at::Tensor>& lengths_in, double scale) {
  // checked first, so that a CPU tensor among the inputs is named before the guard needs a
  // CUDA device (the preparation's allocations follow their inputs' device)
  ForwardPrep p = prepare_forward(h_text_in, h_audio_in, q_text, q_audio, lengths_in, scale);
  const c10::cuda::CUDAGuard guard(p.h_text.device());
  const Sizes s = p.sizes;
  if (s.batch * s.heads == 0) {
    return p.outputs();
  }
  FASTSER_DISPATCH_CUDA_FLOATING_TYPES(p.h_text.scalar_type(), "cross_attention_cuda", [&] {
    using acc = acc_t<scalar_t>;
    const ForwardParams<scalar_t> params{
        p.h_text.const_data_ptr<scalar_t>(), p.h_audio.const_data_ptr<scalar_t>(),
        frame_strides(p.h_text), frame_strides(p.h_audio), p.queries.const_data_ptr<acc>(),
        p.lengths ? p.lengths->const_data_ptr<int64_t>() : nullptr, s.batch, s.frames, s.heads,
        s.dim,
        {p.contexts[0].mutable_data_ptr<scalar_t>(), p.contexts[1].mutable_data_ptr<scalar_t>(),
         p.contexts[2].mutable_data_ptr<scalar_t>(), p.contexts[3].mutable_data_ptr<scalar_t>()},
        p.stats.mutable_data_ptr<acc>()};
    const int64_t shared_per_warp = (4 * s.dim + 4) * static_cast<int64_t>(sizeof(acc));
    const int warps = warps_for(s.frames, shared_per_warp);
    with_values_per_lane(s.dim, [&](auto vpt) {
      cross_attention_forward_kernel<scalar_t, decltype(vpt)::value>
          <<<grid_for(s), dim3(kWarp, warps), warps * shared_per_warp,
             cuda::current_stream()>>>(params);
      FASTSER_CUDA_LAUNCH_CHECK();
    });
  });
  return p.outputs();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> cross_attention_backward_cuda(
    const std::optional<at::Tensor>& grad_tt, const std::optional<at::Tensor>& grad_ta,
    const std::optional<at::Tensor>& grad_aa, const std::optional<at::Tensor>& grad_at,
    const at::Tensor& h_text_in, const at::Tensor& h_audio_in, const at::Tensor& q_text,
    const at::Tensor& q_audio, const std::optional<at::Tensor>& lengths_in,
    const at::Tensor& softmax_stats, double scale) {
  BackwardPrep p = prepare_backward(grad_tt, grad_ta, grad_aa, grad_at, h_text_in, h_audio_in,
                                    q_text, q_audio, lengths_in, softmax_stats, scale);
  const c10::cuda::CUDAGuard guard(p.h_text.device());  // after the checks, as in the forward
  const Sizes s = p.sizes;
  const at::Tensor &h_text = p.h_text, &h_audio = p.h_audio, &queries = p.queries, &stats = p.stats;
  const auto& lengths = p.lengths;
  const auto& grads = p.grads;
  at::Tensor &grad_h_text = p.grad_h_text, &grad_h_audio = p.grad_h_audio;
  at::Tensor &grad_q_text = p.grad_q_text, &grad_q_audio = p.grad_q_audio;
  if (s.batch * s.heads == 0) {  // no (b, h): dq is an empty sum
    grad_q_text.zero_();
    grad_q_audio.zero_();
    return {grad_h_text, grad_h_audio, grad_q_text, grad_q_audio};
  }
  at::Tensor partial = at::empty({2, s.batch, s.heads, s.dim}, stats.options());
  at::Tensor frame_values = at::empty({s.batch, s.heads, s.frames, 4}, stats.options());
  FASTSER_DISPATCH_CUDA_FLOATING_TYPES(h_text.scalar_type(), "cross_attention_backward_cuda", [&] {
    using acc = acc_t<scalar_t>;
    const auto grad_ptr = [](const std::optional<at::Tensor>& g) {
      return g ? g->const_data_ptr<scalar_t>() : nullptr;
    };
    const BackwardParams<scalar_t> params{
        {grad_ptr(grads[0]), grad_ptr(grads[1]), grad_ptr(grads[2]), grad_ptr(grads[3])},
        h_text.const_data_ptr<scalar_t>(), h_audio.const_data_ptr<scalar_t>(),
        frame_strides(h_text), frame_strides(h_audio), queries.const_data_ptr<acc>(),
        lengths ? lengths->const_data_ptr<int64_t>() : nullptr, stats.const_data_ptr<acc>(),
        s.batch, s.frames, s.heads, s.dim, static_cast<acc>(scale),
        frame_values.mutable_data_ptr<acc>(), grad_h_text.mutable_data_ptr<scalar_t>(),
        grad_h_audio.mutable_data_ptr<scalar_t>(), partial.mutable_data_ptr<acc>()};
    const int64_t shared_per_warp = (4 * s.dim + 2) * static_cast<int64_t>(sizeof(acc));
    const int warps = warps_for(s.frames, shared_per_warp);
    with_values_per_lane(s.dim, [&](auto vpt) {
      cross_attention_backward_kernel<scalar_t, decltype(vpt)::value>
          <<<grid_for(s), dim3(kWarp, warps), warps * shared_per_warp,
             cuda::current_stream()>>>(params);
      FASTSER_CUDA_LAUNCH_CHECK();
    });
    const int64_t row = s.heads * s.dim;
    if (row > 0) {
      const int64_t blocks = (2 * row + kReduceThreads - 1) / kReduceThreads;
      reduce_query_grads_kernel<scalar_t><<<blocks, kReduceThreads, 0, cuda::current_stream()>>>(
          partial.const_data_ptr<acc>(), s.batch, row, grad_q_text.mutable_data_ptr<scalar_t>(),
          grad_q_audio.mutable_data_ptr<scalar_t>());
      FASTSER_CUDA_LAUNCH_CHECK();
    }
  });
  return {grad_h_text, grad_h_audio, grad_q_text, grad_q_audio};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastser, CUDA, m) {
  m.impl("cross_attention", &cross_attention_cuda);
  m.impl("cross_attention_backward", &cross_attention_backward_cuda);
}

}  // namespace fastser::cross_attention
