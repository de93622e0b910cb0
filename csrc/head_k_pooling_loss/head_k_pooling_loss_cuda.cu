// CUDA kernels of head_k_pooling_loss.  One warp per utterance: a bitwise radix select over
// the order keys of the label-class column finds the selection threshold (the K-th segment in
// (logit desc, index asc) order) for any N, then the warp makes one coalesced pass over the
// utterance's N x C logits for the loss terms and the gradient, and reduces with a fixed
// shuffle tree.  "mean"/"sum" are reduced by one block in a fixed order: deterministic.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <string>

#include "common/cuda_utils.cuh"
#include "common/dispatch.h"
#include "head_k_pooling_loss/head_k_pooling_loss.h"

namespace fastser::head_k_pooling {
namespace {

constexpr int kWarpSize = 32;
constexpr int kWarpsPerBlock = 4;
constexpr int kThreads = kWarpSize * kWarpsPerBlock;
// Label-column keys each lane keeps in registers: utterances of up to 32 x 4 = 128 segments
// are selected without re-reading memory; longer ones re-read the rest from L1/L2 each pass.
constexpr int kCachedChunks = 4;
constexpr int kReduceThreads = 256;
// Blocks of the loss kernel at most (its warps stride over larger batches); far below the grid
// limit and above what any GPU holds at once.
constexpr int64_t kMaxBlocks = int64_t(1) << 20;
constexpr unsigned kFullMask = 0xffffffffu;

// The order keys of one utterance's label-class column, as seen by one lane of its warp:
// lane l owns segments l, l + 32, l + 64, ...
template <typename scalar_t>
struct ColumnKeys {
  using acc = acc_t<scalar_t>;
  using Key = typename OrderKey<acc>::type;

  const scalar_t* column;  // &logits[start, label]
  int64_t stride;          // C
  int64_t n;
  int lane;
  Key cached[kCachedChunks];

  __device__ ColumnKeys(const scalar_t* column_, int64_t stride_, int64_t n_, int lane_)
      : column(column_), stride(stride_), n(n_), lane(lane_) {
#pragma unroll
    for (int r = 0; r < kCachedChunks; ++r) {
      const int64_t s = lane + int64_t(r) * kWarpSize;
      cached[r] = s < n ? read(s) : Key(0);
    }
  }

  __device__ __forceinline__ Key read(int64_t s) const {
    return order_key(static_cast<acc>(column[s * stride]));
  }

  // Key of segment chunk * 32 + lane (chunk is warp-uniform); 0 past the end.
  __device__ __forceinline__ Key chunk_key(int64_t chunk) const {
    Key key = Key(0);
#pragma unroll
    for (int r = 0; r < kCachedChunks; ++r) {
      if (chunk == r) key = cached[r];
    }
    const int64_t s = chunk * kWarpSize + lane;
    return chunk < kCachedChunks ? key : (s < n ? read(s) : Key(0));
  }

  // How many segments of the utterance have (key & mask) == value; the same on every lane
  // (one ballot per chunk of 32 segments, no shuffle reduction).
  __device__ int64_t count_matching(Key mask, Key value) const {
    int64_t count = 0;
#pragma unroll
    for (int r = 0; r < kCachedChunks; ++r) {
      const int64_t s = lane + int64_t(r) * kWarpSize;
      count += __popc(__ballot_sync(kFullMask, s < n && (cached[r] & mask) == value));
    }
    for (int64_t chunk = kCachedChunks; chunk * kWarpSize < n; ++chunk) {
      const int64_t s = chunk * kWarpSize + lane;
      count += __popc(__ballot_sync(kFullMask, s < n && (read(s) & mask) == value));
    }
    return count;
  }
};

// The top-th segment in selection order (warp-uniform result).  The radix select fixes the
// key bit by bit from the top; `remaining` then counts how many segments holding exactly that
// key are selected, and a ballot scan in index order finds the last of them.
template <typename scalar_t>
__device__ Threshold<typename ColumnKeys<scalar_t>::Key> find_threshold(
    const ColumnKeys<scalar_t>& keys, int64_t top) {
  using Key = typename ColumnKeys<scalar_t>::Key;
  if (top == keys.n) {
    return Threshold<Key>::all();
  }
  Key prefix = 0;
  Key mask = 0;
  int64_t remaining = top;
  for (int bit = 8 * int(sizeof(Key)) - 1; bit >= 0; --bit) {
    const Key b = Key(1) << bit;
    const int64_t with_bit = keys.count_matching(mask | b, prefix | b);
    if (with_bit >= remaining) {
      prefix |= b;
    } else {
      remaining -= with_bit;
    }
    mask |= b;
  }
  const unsigned lanes_below = (1u << keys.lane) - 1u;
  for (int64_t chunk = 0; chunk * kWarpSize < keys.n; ++chunk) {
    const bool equal = keys.chunk_key(chunk) == prefix &&
                       chunk * kWarpSize + keys.lane < keys.n;
    const unsigned ballot = __ballot_sync(kFullMask, equal);
    const int64_t in_chunk = __popc(ballot);
    if (remaining <= in_chunk) {
      const bool last = equal && __popc(ballot & lanes_below) == remaining - 1;
      const unsigned hit = __ballot_sync(kFullMask, last);
      return {prefix, chunk * kWarpSize + (__ffs(hit) - 1)};
    }
    remaining -= in_chunk;
  }
  return {prefix, keys.n - 1};  // unreachable: the top-th segment exists
}

// One warp: losses[b] of utterance b and, when grad is not null, its rows of d loss / d logits
// (times grad_scale: 1/B for "mean").
template <typename scalar_t>
__device__ void utterance_loss(const scalar_t* __restrict__ logits,
                               const int64_t* __restrict__ lengths,
                               const int64_t* __restrict__ ends,
                               const int64_t* __restrict__ labels, int64_t b, int64_t classes,
                               double k, int64_t neutral_class, acc_t<scalar_t> negative_weight,
                               acc_t<scalar_t> grad_scale, acc_t<scalar_t>* __restrict__ losses,
                               acc_t<scalar_t>* __restrict__ grad) {
  using acc = acc_t<scalar_t>;
  const int lane = threadIdx.x % kWarpSize;
  const int64_t n = lengths[b];
  const int64_t start = ends[b] - n;
  const int64_t label = labels[b];
  FASTSER_DEVICE_ASSERT(n >= 1 && start >= 0 && label >= 0 && label < classes);
  const scalar_t* z = logits + start * classes;
  acc* g = grad == nullptr ? nullptr : grad + start * classes;

  const int64_t top = num_selected(n, k);
  const int64_t rest = n - top;
  const int64_t negatives = num_negative_classes(classes, label, neutral_class);
  const bool has_negative_term = rest > 0 && negatives > 0;
  const acc positive_count = acc(top * classes);
  const acc negative_count = acc(has_negative_term ? rest * negatives : 1);
  const acc positive_grad = grad_scale / positive_count;
  const acc negative_grad = grad_scale * negative_weight / negative_count;

  const ColumnKeys<scalar_t> keys(z + label, classes, n, lane);
  const auto threshold = find_threshold(keys, top);

  acc positive = 0;
  acc negative = 0;
  // Element j = s * C + c, walked with stride 32 without dividing.
  int64_t s = lane / classes;
  int64_t c = lane - s * classes;
  const int64_t segment_step = kWarpSize / classes;
  const int64_t class_step = kWarpSize - segment_step * classes;
  for (int64_t j = lane; j < n * classes; j += kWarpSize) {
    const bool selected = threshold.selects(keys.read(s), s);
    acc d = 0;
    if (selected) {
      const auto term = bce_with_logits(static_cast<acc>(z[j]), c == label);
      positive += term.loss;
      d = positive_grad * term.grad;
    } else if (is_negative_class(c, label, neutral_class)) {
      const auto term = bce_with_logits(static_cast<acc>(z[j]), false);
      negative += term.loss;
      d = negative_grad * term.grad;
    }
    if (g != nullptr) {
      g[j] = d;
    }
    s += segment_step;
    c += class_step;
    if (c >= classes) {
      c -= classes;
      s += 1;
    }
  }
  positive = cuda::warp_sum(positive);
  negative = cuda::warp_sum(negative);
  if (lane == 0) {
    const acc negative_term = has_negative_term ? negative / negative_count : acc(0);
    losses[b] = positive / positive_count + negative_weight * negative_term;
  }
}

// One warp per utterance, warps striding over the batch (the grid is capped at kMaxBlocks).
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) head_k_pooling_loss_kernel(
    const scalar_t* __restrict__ logits, const int64_t* __restrict__ lengths,
    const int64_t* __restrict__ ends, const int64_t* __restrict__ labels, int64_t batch,
    int64_t classes, double k, int64_t neutral_class, acc_t<scalar_t> negative_weight,
    acc_t<scalar_t> grad_scale, acc_t<scalar_t>* __restrict__ losses,
    acc_t<scalar_t>* __restrict__ grad) {
  const int64_t warps = int64_t(gridDim.x) * kWarpsPerBlock;
  // b is warp-uniform, so every ballot and shuffle inside sees the full warp.
  for (int64_t b = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize; b < batch;
       b += warps) {
    utterance_loss(logits, lengths, ends, labels, b, classes, k, neutral_class, negative_weight,
                   grad_scale, losses, grad);
  }
}

// out = sum (or mean) of the B per-utterance losses: one block, strided float64 sums, then a
// fixed tree.
template <typename scalar_t>
__global__ void __launch_bounds__(kReduceThreads) reduce_losses_kernel(
    const acc_t<scalar_t>* __restrict__ losses, int64_t batch, bool mean,
    scalar_t* __restrict__ out) {
  __shared__ double partial[kReduceThreads];
  double sum = 0.0;
  for (int64_t b = threadIdx.x; b < batch; b += kReduceThreads) {
    sum += static_cast<double>(losses[b]);
  }
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (int stride = kReduceThreads / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) {
      partial[threadIdx.x] += partial[threadIdx.x + stride];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const double total = mean ? partial[0] / static_cast<double>(batch) : partial[0];
    *out = static_cast<scalar_t>(static_cast<acc_t<scalar_t>>(total));
  }
}

// out[i] = grad[i] * upstream[utterance of row i / C] ("none": ends are the inclusive prefix
// sums of lengths) or * upstream[0] (ends null: "mean" and "sum").
template <typename scalar_t>
__global__ void scale_gradient_kernel(const acc_t<scalar_t>* __restrict__ grad,
                                      const scalar_t* __restrict__ upstream,
                                      const int64_t* __restrict__ ends, int64_t batch,
                                      int64_t classes, int64_t total, scalar_t* __restrict__ out) {
  using acc = acc_t<scalar_t>;
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += step) {
    int64_t utterance = 0;
    if (ends != nullptr) {
      const int64_t row = i / classes;
      int64_t lo = 0;
      int64_t hi = batch - 1;
      while (lo < hi) {  // first utterance whose end is past row
        const int64_t mid = (lo + hi) / 2;
        if (ends[mid] > row) {
          hi = mid;
        } else {
          lo = mid + 1;
        }
      }
      utterance = lo;
    }
    out[i] = static_cast<scalar_t>(grad[i] * static_cast<acc>(upstream[utterance]));
  }
}

std::tuple<at::Tensor, at::Tensor> head_k_pooling_loss_cuda(
    const at::Tensor& logits_in, const at::Tensor& lengths_in, const at::Tensor& labels_in,
    double k, std::optional<int64_t> neutral_class, double negative_weight,
    c10::string_view reduction, bool compute_grad) {
  const Config cfg = check_forward(logits_in, lengths_in, labels_in, k, neutral_class,
                                   negative_weight, std::string(reduction));
  const c10::cuda::CUDAGuard guard(logits_in.device());
  const auto logits = logits_in.contiguous();
  const auto lengths = lengths_in.contiguous();
  const auto labels = labels_in.contiguous();
  const auto ends = at::cumsum(lengths, 0);
  const auto dtype = logits.scalar_type();
  const auto acc_options = logits.options().dtype(at::toOpMathType(dtype));
  auto losses = at::empty({cfg.batch}, acc_options);
  auto grad = compute_grad ? at::empty({cfg.segments, cfg.classes}, acc_options)
                           : at::empty({0}, acc_options);
  at::Tensor loss = cfg.reduction == Reduction::kNone ? at::Tensor()
                                                      : at::empty({}, logits.options());
  const auto stream = cuda::current_stream();
  const int64_t blocks = std::min(ceil_div(cfg.batch, kWarpsPerBlock), kMaxBlocks);

  FASTSER_DISPATCH_CUDA_FLOATING_TYPES(dtype, "head_k_pooling_loss_cuda", [&] {
    using acc = acc_t<scalar_t>;
    const acc grad_scale =
        cfg.reduction == Reduction::kMean ? acc(1) / acc(cfg.batch) : acc(1);
    head_k_pooling_loss_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
        logits.const_data_ptr<scalar_t>(), lengths.const_data_ptr<int64_t>(),
        ends.const_data_ptr<int64_t>(), labels.const_data_ptr<int64_t>(), cfg.batch,
        cfg.classes, cfg.k, cfg.neutral_class, acc(cfg.negative_weight), grad_scale,
        losses.mutable_data_ptr<acc>(), compute_grad ? grad.mutable_data_ptr<acc>() : nullptr);
    FASTSER_CUDA_LAUNCH_CHECK();
    if (cfg.reduction != Reduction::kNone) {
      reduce_losses_kernel<scalar_t><<<1, kReduceThreads, 0, stream>>>(
          losses.const_data_ptr<acc>(), cfg.batch, cfg.reduction == Reduction::kMean,
          loss.mutable_data_ptr<scalar_t>());
      FASTSER_CUDA_LAUNCH_CHECK();
    }
  });
  if (cfg.reduction == Reduction::kNone) {
    loss = losses.to(dtype);
  }
  return {loss, grad};
}

at::Tensor head_k_pooling_loss_backward_cuda(const at::Tensor& grad_loss_in,
                                             const at::Tensor& grad_logits_in,
                                             const at::Tensor& lengths_in,
                                             c10::string_view reduction) {
  const Reduction parsed =
      check_backward(grad_loss_in, grad_logits_in, lengths_in, std::string(reduction));
  const c10::cuda::CUDAGuard guard(grad_logits_in.device());
  const auto grad_loss = grad_loss_in.contiguous();
  const auto grad_logits = grad_logits_in.contiguous();
  auto out = at::empty(grad_logits.sizes(), grad_logits.options().dtype(grad_loss.scalar_type()));
  const int64_t total = out.numel();
  if (total == 0) {
    return out;
  }
  const auto ends = parsed == Reduction::kNone ? at::cumsum(lengths_in, 0) : at::Tensor();
  const int64_t blocks = std::min<int64_t>(ceil_div(total, kThreads), 4096);

  const auto dtype = grad_loss.scalar_type();
  FASTSER_DISPATCH_CUDA_FLOATING_TYPES(dtype, "head_k_pooling_loss_backward_cuda", [&] {
    using acc = acc_t<scalar_t>;
    scale_gradient_kernel<scalar_t><<<blocks, kThreads, 0, cuda::current_stream()>>>(
        grad_logits.const_data_ptr<acc>(), grad_loss.const_data_ptr<scalar_t>(),
        ends.defined() ? ends.const_data_ptr<int64_t>() : nullptr, lengths_in.size(0),
        grad_logits.size(1), total, out.mutable_data_ptr<scalar_t>());
    FASTSER_CUDA_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace
}  // namespace fastser::head_k_pooling

TORCH_LIBRARY_IMPL(fastser, CUDA, m) {
  m.impl("head_k_pooling_loss", &fastser::head_k_pooling::head_k_pooling_loss_cuda);
  m.impl("head_k_pooling_loss_backward",
         &fastser::head_k_pooling::head_k_pooling_loss_backward_cuda);
}
