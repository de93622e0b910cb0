// CUDA kernels of fastser::cross_attention (ARCHITECTURE.md 3.2).
//
// One block per (b, h); its warps take every warps-th frame, each lane holding d/32 (rounded up)
// values of a row in registers, so loads are coalesced and float16/bfloat16 are widened to the
// float32 accumulation type on load.  Forward: per warp, an online softmax per modality (running
// max and sum, rescaled self and crossed accumulators); the warps' states are merged in shared
// memory in a fixed order.  Backward: per frame, the weights are recomputed from the saved
// log-sum-exp, dh is written for every frame (0 past n), and dq is accumulated per warp, merged
// per (b, h) in a fixed order and summed over b in increasing order by a second kernel: no atomics,
// so results are deterministic.
#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "common/dispatch.h"
#include "cross_attention/cross_attention.h"

#include <ATen/ATen.h>
#include <torch/library.h>

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
  const acc* queries;      // (2, H, d): text, audio
  const int64_t* lengths;  // (B,) or null
  int64_t batch, frames, heads, dim;
  acc scale;
  scalar_t* contexts[4];  // c_tt, c_ta, c_aa, c_at: (B, H, d)
  acc* lse;               // (2, B, H)
};

template <typename scalar_t>
struct BackwardParams {
  using acc = acc_t<scalar_t>;
  const scalar_t* grads[4];  // d c_tt, d c_ta, d c_aa, d c_at: (B, H, d) or null (zero)
  const scalar_t* h_text;
  const scalar_t* h_audio;
  FrameStrides text_strides, audio_strides;
  const acc* queries;
  const int64_t* lengths;
  const scalar_t* c_tt;  // (B, H, d)
  const scalar_t* c_aa;
  const acc* lse;  // (2, B, H)
  int64_t batch, frames, heads, dim;
  acc scale;
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

// <x, y> over the warp's row; every lane gets the same bits (the xor butterfly adds each pair
// in both orders).
template <int VPT, typename acc>
__device__ __forceinline__ acc warp_dot(const acc (&x)[VPT], const acc (&y)[VPT]) {
  acc sum = 0;
#pragma unroll
  for (int j = 0; j < VPT; ++j) {
    sum += x[j] * y[j];
  }
  return cuda::warp_sum(sum);
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

template <typename scalar_t, int VPT>
__global__ void __launch_bounds__(kWarp* kMaxWarps)
    cross_attention_forward_kernel(const ForwardParams<scalar_t> p) {
  using acc = acc_t<scalar_t>;
  const int64_t bh = blockIdx.x;
  const int64_t b = bh / p.heads, h = bh % p.heads, d = p.dim;
  const int lane = threadIdx.x, warp = threadIdx.y, warps = blockDim.y;
  const int64_t n = p.lengths == nullptr ? p.frames : p.lengths[b];

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
    const acc w_text = online_add(p.scale * warp_dot(q_text, t), max_text, sum_text, tt, ta);
    const acc w_audio = online_add(p.scale * warp_dot(q_audio, a), max_audio, sum_audio, aa, at);
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
  extern __shared__ unsigned char shared_bytes[];
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
    p.lse[bh] = block_max[0] + log(block_sum[0]);
    p.lse[p.batch * p.heads + bh] = block_max[1] + log(block_sum[1]);
  }
}

template <typename scalar_t, int VPT>
__global__ void __launch_bounds__(kWarp* kMaxWarps)
    cross_attention_backward_kernel(const BackwardParams<scalar_t> p) {
  using acc = acc_t<scalar_t>;
  const int64_t bh = blockIdx.x;
  const int64_t b = bh / p.heads, h = bh % p.heads, d = p.dim;
  const int64_t bh_count = p.batch * p.heads;
  const int lane = threadIdx.x, warp = threadIdx.y, warps = blockDim.y;
  const int64_t n = p.lengths == nullptr ? p.frames : p.lengths[b];

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
  // Σ_i α_i <g, h_i> = <g, c>: the softmax backward's shift, from the saved outputs.
  acc context[VPT];
  load_row(p.c_tt + bh * d, d, lane, context);
  const acc shift_text = warp_dot(g[0], context);
  load_row(p.c_aa + bh * d, d, lane, context);
  const acc shift_audio = warp_dot(g[2], context);
  const acc lse_text = p.lse[bh], lse_audio = p.lse[bh_count + bh];

  acc dq_text[VPT] = {}, dq_audio[VPT] = {};
  const scalar_t* text = p.h_text + b * p.text_strides.b + h * p.text_strides.h;
  const scalar_t* audio = p.h_audio + b * p.audio_strides.b + h * p.audio_strides.h;
  for (int64_t i = warp; i < p.frames; i += warps) {
    const int64_t out_offset = ((b * p.frames + i) * p.heads + h) * d;
    acc dt[VPT], da[VPT];
    if (i < n) {
      acc t[VPT], a[VPT];
      load_row(text + i * p.text_strides.l, d, lane, t);
      load_row(audio + i * p.audio_strides.l, d, lane, a);
      const acc w_text = exp(p.scale * warp_dot(q_text, t) - lse_text);
      const acc w_audio = exp(p.scale * warp_dot(q_audio, a) - lse_audio);
      // Score gradients (times scale) of the non-crossed terms only: sg() stops the rest.
      const acc ds_text = p.scale * w_text * (warp_dot(g[0], t) - shift_text);
      const acc ds_audio = p.scale * w_audio * (warp_dot(g[2], a) - shift_audio);
#pragma unroll
      for (int j = 0; j < VPT; ++j) {
        dt[j] = w_text * g[0][j] + w_audio * g[3][j] + ds_text * q_text[j];
        da[j] = w_text * g[1][j] + w_audio * g[2][j] + ds_audio * q_audio[j];
        dq_text[j] += ds_text * t[j];
        dq_audio[j] += ds_audio * a[j];
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

  // Merge the warps' dq rows in a fixed order.
  extern __shared__ unsigned char shared_bytes[];
  acc* rows = reinterpret_cast<acc*>(shared_bytes);
  store_row(dq_text, d, lane, rows + (2 * warp) * d);
  store_row(dq_audio, d, lane, rows + (2 * warp + 1) * d);
  __syncthreads();
  const int tid = warp * kWarp + lane, threads = warps * kWarp;
  for (int64_t k = tid; k < d; k += threads) {
    acc merged[2] = {0, 0};
    for (int w = 0; w < warps; ++w) {
      merged[0] += rows[(2 * w) * d + k];
      merged[1] += rows[(2 * w + 1) * d + k];
    }
    p.grad_q_partial[bh * d + k] = merged[0];
    p.grad_q_partial[(bh_count + bh) * d + k] = merged[1];
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

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> cross_attention_cuda(
    const at::Tensor& h_text_in, const at::Tensor& h_audio_in, const at::Tensor& q_text,
    const at::Tensor& q_audio, const std::optional<at::Tensor>& lengths_in, double scale) {
  const Sizes s = check_forward_args(h_text_in, h_audio_in, q_text, q_audio, lengths_in, scale,
                                     kForwardOp);
  const c10::cuda::CUDAGuard guard(h_text_in.device());
  const at::Tensor h_text = unit_inner_stride(h_text_in), h_audio = unit_inner_stride(h_audio_in);
  const at::Tensor queries = stacked_queries(q_text, q_audio);
  const auto lengths = contiguous_or_absent(lengths_in);
  at::Tensor contexts[4];
  for (auto& c : contexts) {
    c = at::empty({s.batch, s.heads, s.dim}, h_text.options());
  }
  at::Tensor lse = at::empty({2, s.batch, s.heads},
                             h_text.options().dtype(accumulation_dtype(h_text.scalar_type())));
  if (s.batch * s.heads == 0) {
    return {contexts[0], contexts[1], contexts[2], contexts[3], lse};
  }
  FASTSER_DISPATCH_FLOATING_TYPES(h_text.scalar_type(), "cross_attention_cuda", [&] {
    using acc = acc_t<scalar_t>;
    const ForwardParams<scalar_t> params{
        h_text.const_data_ptr<scalar_t>(), h_audio.const_data_ptr<scalar_t>(),
        frame_strides(h_text), frame_strides(h_audio), queries.const_data_ptr<acc>(),
        lengths ? lengths->const_data_ptr<int64_t>() : nullptr, s.batch, s.frames, s.heads,
        s.dim, static_cast<acc>(scale),
        {contexts[0].mutable_data_ptr<scalar_t>(), contexts[1].mutable_data_ptr<scalar_t>(),
         contexts[2].mutable_data_ptr<scalar_t>(), contexts[3].mutable_data_ptr<scalar_t>()},
        lse.mutable_data_ptr<acc>()};
    const int64_t shared_per_warp = (4 * s.dim + 4) * static_cast<int64_t>(sizeof(acc));
    const int warps = warps_for(s.frames, shared_per_warp);
    with_values_per_lane(s.dim, [&](auto vpt) {
      cross_attention_forward_kernel<scalar_t, decltype(vpt)::value>
          <<<s.batch * s.heads, dim3(kWarp, warps), warps * shared_per_warp,
             cuda::current_stream()>>>(params);
      FASTSER_CUDA_LAUNCH_CHECK();
    });
  });
  return {contexts[0], contexts[1], contexts[2], contexts[3], lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> cross_attention_backward_cuda(
    const std::optional<at::Tensor>& grad_tt, const std::optional<at::Tensor>& grad_ta,
    const std::optional<at::Tensor>& grad_aa, const std::optional<at::Tensor>& grad_at,
    const at::Tensor& h_text_in, const at::Tensor& h_audio_in, const at::Tensor& q_text,
    const at::Tensor& q_audio, const std::optional<at::Tensor>& lengths_in,
    const at::Tensor& c_tt_in, const at::Tensor& c_aa_in, const at::Tensor& softmax_lse,
    double scale) {
  const Sizes s = check_backward_args(grad_tt, grad_ta, grad_aa, grad_at, h_text_in, h_audio_in,
                                      q_text, q_audio, lengths_in, c_tt_in, c_aa_in, softmax_lse,
                                      scale);
  const c10::cuda::CUDAGuard guard(h_text_in.device());
  const at::Tensor h_text = unit_inner_stride(h_text_in), h_audio = unit_inner_stride(h_audio_in);
  const at::Tensor queries = stacked_queries(q_text, q_audio);
  const auto lengths = contiguous_or_absent(lengths_in);
  const std::optional<at::Tensor> grads[4] = {
      contiguous_or_absent(grad_tt), contiguous_or_absent(grad_ta),
      contiguous_or_absent(grad_aa), contiguous_or_absent(grad_at)};
  const at::Tensor c_tt = c_tt_in.contiguous(), c_aa = c_aa_in.contiguous();
  const at::Tensor lse = softmax_lse.contiguous();
  at::Tensor grad_h_text = at::empty(h_text.sizes(), h_text.options());
  at::Tensor grad_h_audio = at::empty(h_text.sizes(), h_text.options());
  at::Tensor grad_q_text = at::empty({s.heads, s.dim}, h_text.options());
  at::Tensor grad_q_audio = at::empty({s.heads, s.dim}, h_text.options());
  at::Tensor partial = at::empty({2, s.batch, s.heads, s.dim}, lse.options());
  if (s.batch * s.heads == 0) {  // no (b, h): dq is an empty sum
    grad_q_text.zero_();
    grad_q_audio.zero_();
    return {grad_h_text, grad_h_audio, grad_q_text, grad_q_audio};
  }
  FASTSER_DISPATCH_FLOATING_TYPES(h_text.scalar_type(), "cross_attention_backward_cuda", [&] {
    using acc = acc_t<scalar_t>;
    const auto grad_ptr = [](const std::optional<at::Tensor>& g) {
      return g ? g->const_data_ptr<scalar_t>() : nullptr;
    };
    const BackwardParams<scalar_t> params{
        {grad_ptr(grads[0]), grad_ptr(grads[1]), grad_ptr(grads[2]), grad_ptr(grads[3])},
        h_text.const_data_ptr<scalar_t>(), h_audio.const_data_ptr<scalar_t>(),
        frame_strides(h_text), frame_strides(h_audio), queries.const_data_ptr<acc>(),
        lengths ? lengths->const_data_ptr<int64_t>() : nullptr, c_tt.const_data_ptr<scalar_t>(),
        c_aa.const_data_ptr<scalar_t>(), lse.const_data_ptr<acc>(), s.batch, s.frames, s.heads,
        s.dim, static_cast<acc>(scale), grad_h_text.mutable_data_ptr<scalar_t>(),
        grad_h_audio.mutable_data_ptr<scalar_t>(), partial.mutable_data_ptr<acc>()};
    const int64_t shared_per_warp = 2 * s.dim * static_cast<int64_t>(sizeof(acc));
    const int warps = warps_for(s.frames, shared_per_warp);
    with_values_per_lane(s.dim, [&](auto vpt) {
      cross_attention_backward_kernel<scalar_t, decltype(vpt)::value>
          <<<s.batch * s.heads, dim3(kWarp, warps), warps * shared_per_warp,
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
