// CPU kernels of fastser::cross_attention (docs/ops.md, cross_attention).
//
// (b, h) pairs are spread over threads with at::parallel_for; a task takes runs of consecutive
// heads of one sequence and loops over frames outside and heads inside, so each frame's heads
// are read (and in the backward written) as one contiguous row.  The forward streams once over
// the frames i < n of both modalities with an online softmax per modality (running max and sum;
// the self and crossed accumulators are rescaled when the max grows).  The backward recomputes
// the weights from the saved softmax statistics in one pass over h, then writes dh for every frame
// (0 past n) from per-frame scalars, and a per-(b, h) partial of dq; the partials are summed
// over b in a fixed order.
// Results do not depend on the thread count.
#include "common/checks.h"
#include "common/cpu_vec.h"
#include "common/dispatch.h"
#include "cross_attention/cross_attention.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>
#include <type_traits>
#include <vector>

namespace fastser::cross_attention {
namespace {

using cpu::row_dot;

// Work (in frame x dim multiply-adds) below which a range of (b, h) tasks is not split further.
constexpr int64_t kGrainWork = 1 << 15;

int64_t grain_size(const Sizes& s) {
  return std::max<int64_t>(1, kGrainWork / std::max<int64_t>(1, s.frames * s.dim));
}

// Calls fn(b, h_begin, h_end) for the runs of consecutive heads of one sequence that make up
// the range [begin, end) of flattened (b, h) indices.
template <typename Fn>
void for_each_head_run(int64_t begin, int64_t end, int64_t heads, const Fn& fn) {
  for (int64_t bh = begin; bh < end;) {
    const int64_t b = bh / heads, h_begin = bh % heads;
    const int64_t h_end = std::min(heads, h_begin + (end - bh));
    fn(b, h_begin, h_end);
    bh += h_end - h_begin;
  }
}

// Row `src` (d values) as accumulation-type values: src itself when the types agree, else a
// conversion into `buffer`.
template <typename acc, typename scalar_t>
inline const acc* row_as_acc(const scalar_t* src, acc* buffer, int64_t d) {
  if constexpr (std::is_same_v<acc, scalar_t>) {
    return src;
  } else {
    cpu::row_convert(buffer, src, d);
    return buffer;
  }
}

// Where a row of d accumulation-type results goes: dst itself when the types agree, else
// `buffer` (then converted with store_row).
template <typename acc, typename scalar_t>
inline acc* row_target(scalar_t* dst, acc* buffer) {
  if constexpr (std::is_same_v<acc, scalar_t>) {
    return dst;
  } else {
    return buffer;
  }
}

template <typename acc, typename scalar_t>
inline void store_row(const acc* src, scalar_t* dst, int64_t d) {
  if constexpr (!std::is_same_v<acc, scalar_t>) {
    cpu::row_convert(dst, src, d);
  } else if (src != dst) {
    std::copy(src, src + d, dst);
  }
}

// Running max and sum of exp(score - max) of one modality's attention.
template <typename acc>
struct OnlineSoftmax {
  acc max = -std::numeric_limits<acc>::infinity();
  acc sum = 0;

  // Folds in a frame's score; when the max grows, rescales the sum and the two accumulators
  // weighted by this softmax.  Returns the frame's weight exp(score - max).
  inline acc add(acc score, acc* self_acc, acc* cross_acc, int64_t d) {
    if (score > max) {
      const acc rescale = std::exp(max - score);
      sum *= rescale;
#pragma omp simd
      for (int64_t k = 0; k < d; ++k) {
        self_acc[k] *= rescale;
        cross_acc[k] *= rescale;
      }
      max = score;
    }
    const acc weight = std::exp(score - max);
    sum += weight;
    return weight;
  }
};

// Frames of a (B, L, H, d) tensor with unit inner stride.
template <typename scalar_t>
struct Frames {
  const scalar_t* data;
  int64_t stride_b, stride_l, stride_h;

  explicit Frames(const at::Tensor& t)
      : data(t.const_data_ptr<scalar_t>()),
        stride_b(t.stride(0)),
        stride_l(t.stride(1)),
        stride_h(t.stride(2)) {}

  const scalar_t* row(int64_t b, int64_t i, int64_t h) const {
    return data + b * stride_b + i * stride_l + h * stride_h;
  }
};

// What every forward task reads and writes.
template <typename scalar_t>
struct ForwardArgs {
  using acc = acc_t<scalar_t>;
  Frames<scalar_t> text, audio;
  const acc* queries;     // (2, H, d): scale·q_text, scale·q_audio
  const int64_t* lengths;  // (B,) or null
  Sizes s;
  scalar_t* contexts[4];  // c_tt, c_ta, c_aa, c_at: (B, H, d)
  acc* stats;             // (2, B, H, 2): max score, Σ exp(score − max)
};

// Forward of sequence b, heads [h_begin, h_end).  `buffer` holds 4·d accumulators per head plus
// two conversion rows, `softmax` two states per head.
template <typename scalar_t>
FASTSER_CPU_MULTIVERSION void forward_run(const ForwardArgs<scalar_t>& p, int64_t b,
                                          int64_t h_begin, int64_t h_end,
                                          acc_t<scalar_t>* buffer,
                                          OnlineSoftmax<acc_t<scalar_t>>* softmax) {
  using acc = acc_t<scalar_t>;
  const int64_t d = p.s.dim, heads = p.s.heads, run = h_end - h_begin;
  acc* text_row = buffer + 4 * run * d;
  acc* audio_row = text_row + d;
  std::fill(buffer, buffer + 4 * run * d, acc(0));
  std::fill(softmax, softmax + 2 * run, OnlineSoftmax<acc>());
  const int64_t n = p.lengths == nullptr ? p.s.frames : p.lengths[b];
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < run; ++j) {
      const acc* t = row_as_acc(p.text.row(b, i, h_begin + j), text_row, d);
      const acc* a = row_as_acc(p.audio.row(b, i, h_begin + j), audio_row, d);
      const acc* q_text = p.queries + (h_begin + j) * d;
      const acc* q_audio = p.queries + (heads + h_begin + j) * d;
      acc* tt = buffer + 4 * j * d;
      acc *ta = tt + d, *aa = ta + d, *at_ = aa + d;
      const acc w_text = softmax[2 * j].add(row_dot(q_text, t, d), tt, ta, d);
      const acc w_audio = softmax[2 * j + 1].add(row_dot(q_audio, a, d), aa, at_, d);
#pragma omp simd
      for (int64_t k = 0; k < d; ++k) {
        tt[k] += w_text * t[k];
        ta[k] += w_text * a[k];
        aa[k] += w_audio * a[k];
        at_[k] += w_audio * t[k];
      }
    }
  }
  for (int64_t j = 0; j < run; ++j) {
    const int64_t bh = b * heads + h_begin + j;
    const acc inv[2] = {acc(1) / softmax[2 * j].sum, acc(1) / softmax[2 * j + 1].sum};
    for (int c = 0; c < 4; ++c) {  // tt and ta use the text weights, aa and at the audio's
      acc* context = buffer + (4 * j + c) * d;
      for (int64_t k = 0; k < d; ++k) {
        context[k] *= inv[c / 2];
      }
      store_row(context, p.contexts[c] + bh * d, d);
    }
    for (int m = 0; m < 2; ++m) {
      acc* stats = p.stats + 2 * (m * p.s.batch * heads + bh);
      stats[0] = softmax[2 * j + m].max;
      stats[1] = softmax[2 * j + m].sum;
    }
  }
}

template <typename scalar_t>
void forward_kernel(const ForwardArgs<scalar_t>& args) {
  using acc = acc_t<scalar_t>;
  const Sizes& s = args.s;
  at::parallel_for(0, s.batch * s.heads, grain_size(s), [&](int64_t begin, int64_t end) {
    const int64_t max_run = std::min(s.heads, end - begin);
    std::vector<acc> buffer((4 * max_run + 2) * s.dim);
    std::vector<OnlineSoftmax<acc>> softmax(2 * max_run);
    for_each_head_run(begin, end, s.heads, [&](int64_t b, int64_t h_begin, int64_t h_end) {
      forward_run(args, b, h_begin, h_end, buffer.data(), softmax.data());
    });
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> cross_attention_cpu(
    const at::Tensor& h_text_in, const at::Tensor& h_audio_in, const at::Tensor& q_text,
    const at::Tensor& q_audio, const std::optional<at::Tensor>& lengths_in, double scale) {
  ForwardPrep p = prepare_forward(h_text_in, h_audio_in, q_text, q_audio, lengths_in, scale);
  const Sizes s = p.sizes;
  FASTSER_DISPATCH_FLOATING_TYPES(p.h_text.scalar_type(), "cross_attention_cpu", [&] {
    using acc = acc_t<scalar_t>;
    forward_kernel(ForwardArgs<scalar_t>{
        Frames<scalar_t>(p.h_text), Frames<scalar_t>(p.h_audio), p.queries.const_data_ptr<acc>(),
        p.lengths ? p.lengths->const_data_ptr<int64_t>() : nullptr, s,
        {p.contexts[0].mutable_data_ptr<scalar_t>(), p.contexts[1].mutable_data_ptr<scalar_t>(),
         p.contexts[2].mutable_data_ptr<scalar_t>(), p.contexts[3].mutable_data_ptr<scalar_t>()},
        p.stats.mutable_data_ptr<acc>()});
  });
  return p.outputs();
}

// What every backward task reads and writes.
template <typename scalar_t>
struct BackwardArgs {
  using acc = acc_t<scalar_t>;
  const scalar_t* grads[4];  // d c_tt, d c_ta, d c_aa, d c_at: (B, H, d) or null (zero)
  Frames<scalar_t> text, audio;
  const acc* queries;      // (2, H, d): scale·q_text, scale·q_audio
  const int64_t* lengths;  // (B,) or null
  const acc* stats;        // (2, B, H, 2): max score, Σ exp(score − max)
  acc scale;
  Sizes s;
  scalar_t* grad_text;  // (B, L, H, d), contiguous
  scalar_t* grad_audio;
  acc* grad_q_partial;  // (2, B, H, d)
};

// Rows per head in the backward's buffer: g_tt, g_ta, g_aa, g_at, then U_text, C_text,
// U_audio, C_audio with U = Σ α_i <g, h_i> h_i and C = Σ α_i h_i (so dq = scale·(U − Δ·C)).
constexpr int64_t kBackwardRows = 8;
// Per head: Δ_text, Δ_audio (the softmax-backward shifts Σ α_i <g, h_i>), then max_text,
// 1 / sum_text, max_audio, 1 / sum_audio.
constexpr int64_t kHeadValues = 6;
// Per frame and head: α_text, <g_tt, h_text>, α_audio, <g_aa, h_audio>.
constexpr int64_t kFrameValues = 4;

// Backward of sequence b, heads [h_begin, h_end), in two passes.  The first reads h once: it
// recomputes the weights from the saved softmax statistics and accumulates Δ (from the same dot
// products the second pass uses, so that <g, h_i> − Δ cancels consistently), U and C.  The
// second writes dh from the per-frame scalars.  `buffer` holds kBackwardRows·d values per head
// plus two conversion rows, `head_values` kHeadValues per head, `frames` (L x run x
// kFrameValues) the per-frame scalars.
template <typename scalar_t>
FASTSER_CPU_MULTIVERSION void backward_run(const BackwardArgs<scalar_t>& p, int64_t b,
                                           int64_t h_begin, int64_t h_end,
                                           acc_t<scalar_t>* buffer, acc_t<scalar_t>* head_values,
                                           acc_t<scalar_t>* frames) {
  using acc = acc_t<scalar_t>;
  const int64_t d = p.s.dim, heads = p.s.heads, run = h_end - h_begin;
  const int64_t bh_count = p.s.batch * heads;
  acc* text_row = buffer + kBackwardRows * run * d;
  acc* audio_row = text_row + d;
  for (int64_t j = 0; j < run; ++j) {
    const int64_t bh = b * heads + h_begin + j;
    acc* rows = buffer + kBackwardRows * j * d;
    for (int g = 0; g < 4; ++g) {
      if (p.grads[g] != nullptr) {
        cpu::row_convert(rows + g * d, p.grads[g] + bh * d, d);
      } else {
        std::fill(rows + g * d, rows + (g + 1) * d, acc(0));
      }
    }
    std::fill(rows + 4 * d, rows + 8 * d, acc(0));
  }
  // α_i = exp(score_i − max) / sum: exactly the forward's weights (1 / sum for the max frame),
  // which exp(score_i − log-sum-exp) would not be once scores are large.
  for (int64_t j = 0; j < run; ++j) {
    const int64_t bh = b * heads + h_begin + j;
    acc* values = head_values + kHeadValues * j;
    values[0] = values[1] = 0;
    for (int m = 0; m < 2; ++m) {
      const acc* stats = p.stats + 2 * (m * bh_count + bh);
      values[2 + 2 * m] = stats[0];
      values[3 + 2 * m] = acc(1) / stats[1];
    }
  }
  const int64_t n = p.lengths == nullptr ? p.s.frames : p.lengths[b];
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < run; ++j) {
      const acc* t = row_as_acc(p.text.row(b, i, h_begin + j), text_row, d);
      const acc* a = row_as_acc(p.audio.row(b, i, h_begin + j), audio_row, d);
      const acc* q_text = p.queries + (h_begin + j) * d;
      const acc* q_audio = p.queries + (heads + h_begin + j) * d;
      acc* rows = buffer + kBackwardRows * j * d;
      acc *u_text = rows + 4 * d, *c_text = u_text + d, *u_audio = c_text + d,
          *c_audio = u_audio + d;
      // The scores exactly as the forward computed them (same function, same operand order).
      const acc score_text = row_dot(q_text, t, d), score_audio = row_dot(q_audio, a, d);
      const acc g_dot_text = row_dot(rows, t, d), g_dot_audio = row_dot(rows + 2 * d, a, d);
      acc* head = head_values + kHeadValues * j;
      const acc w_text = std::exp(score_text - head[2]) * head[3];
      const acc w_audio = std::exp(score_audio - head[4]) * head[5];
      head[0] += w_text * g_dot_text;
      head[1] += w_audio * g_dot_audio;
      const acc wg_text = w_text * g_dot_text, wg_audio = w_audio * g_dot_audio;
#pragma omp simd
      for (int64_t k = 0; k < d; ++k) {
        u_text[k] += wg_text * t[k];
        c_text[k] += w_text * t[k];
        u_audio[k] += wg_audio * a[k];
        c_audio[k] += w_audio * a[k];
      }
      acc* values = frames + (i * run + j) * kFrameValues;
      values[0] = w_text;
      values[1] = g_dot_text;
      values[2] = w_audio;
      values[3] = g_dot_audio;
    }
  }
  const int64_t frame_stride = heads * d;  // of the contiguous gradients
  for (int64_t i = 0; i < n; ++i) {
    const int64_t out_offset = (b * p.s.frames + i) * frame_stride + h_begin * d;
    for (int64_t j = 0; j < run; ++j) {
      const acc* values = frames + (i * run + j) * kFrameValues;
      const acc* shifts = head_values + kHeadValues * j;
      const acc w_text = values[0], w_audio = values[2];
      // Score gradients of the non-crossed terms only (sg() stops the rest); with the scaled
      // queries, ds·(scale·q) is the gradient reaching h through the score.
      const acc ds_text = w_text * (values[1] - shifts[0]);
      const acc ds_audio = w_audio * (values[3] - shifts[1]);
      const acc* g_tt = buffer + kBackwardRows * j * d;
      const acc *g_ta = g_tt + d, *g_aa = g_ta + d, *g_at = g_aa + d;
      const acc* q_text = p.queries + (h_begin + j) * d;
      const acc* q_audio = p.queries + (heads + h_begin + j) * d;
      scalar_t* dt_out = p.grad_text + out_offset + j * d;
      scalar_t* da_out = p.grad_audio + out_offset + j * d;
      acc* dt = row_target(dt_out, text_row);
      acc* da = row_target(da_out, audio_row);
#pragma omp simd
      for (int64_t k = 0; k < d; ++k) {
        dt[k] = w_text * g_tt[k] + w_audio * g_at[k] + ds_text * q_text[k];
        da[k] = w_text * g_ta[k] + w_audio * g_aa[k] + ds_audio * q_audio[k];
      }
      store_row(dt, dt_out, d);
      store_row(da, da_out, d);
    }
  }
  for (int64_t i = n; i < p.s.frames; ++i) {
    const int64_t out_offset = (b * p.s.frames + i) * frame_stride + h_begin * d;
    std::fill(p.grad_text + out_offset, p.grad_text + out_offset + run * d, scalar_t(0));
    std::fill(p.grad_audio + out_offset, p.grad_audio + out_offset + run * d, scalar_t(0));
  }
  for (int64_t j = 0; j < run; ++j) {
    const int64_t bh = b * heads + h_begin + j;
    const acc* u_text = buffer + (kBackwardRows * j + 4) * d;
    const acc *c_text = u_text + d, *u_audio = c_text + d, *c_audio = u_audio + d;
    acc* dq_text = p.grad_q_partial + bh * d;
    acc* dq_audio = p.grad_q_partial + (bh_count + bh) * d;
    const acc* shifts = head_values + kHeadValues * j;
    for (int64_t k = 0; k < d; ++k) {
      dq_text[k] = p.scale * (u_text[k] - shifts[0] * c_text[k]);
      dq_audio[k] = p.scale * (u_audio[k] - shifts[1] * c_audio[k]);
    }
  }
}

template <typename scalar_t>
void backward_kernel(const BackwardArgs<scalar_t>& args) {
  using acc = acc_t<scalar_t>;
  const Sizes& s = args.s;
  at::parallel_for(0, s.batch * s.heads, grain_size(s), [&](int64_t begin, int64_t end) {
    const int64_t max_run = std::min(s.heads, end - begin);
    std::vector<acc> buffer((kBackwardRows * max_run + 2) * s.dim);
    std::vector<acc> head_values(kHeadValues * max_run);
    std::vector<acc> frames(s.frames * max_run * kFrameValues);
    for_each_head_run(begin, end, s.heads, [&](int64_t b, int64_t h_begin, int64_t h_end) {
      backward_run(args, b, h_begin, h_end, buffer.data(), head_values.data(), frames.data());
    });
  });
}

// dq[m, h, :] = Σ_b partial[m, b, h, :], summed over b in increasing order.
template <typename scalar_t>
void reduce_query_grads(const at::Tensor& partial, const Sizes& s, at::Tensor& grad_q_text,
                        at::Tensor& grad_q_audio) {
  using acc = acc_t<scalar_t>;
  const acc* p = partial.const_data_ptr<acc>();
  scalar_t* outs[2] = {grad_q_text.mutable_data_ptr<scalar_t>(),
                       grad_q_audio.mutable_data_ptr<scalar_t>()};
  const int64_t d = s.dim, row = s.heads * d;
  at::parallel_for(0, 2 * s.heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc> sum(d);
    for (int64_t mh = begin; mh < end; ++mh) {
      const int64_t m = mh / s.heads, h = mh % s.heads;
      std::fill(sum.begin(), sum.end(), acc(0));
      for (int64_t b = 0; b < s.batch; ++b) {
        const acc* src = p + (m * s.batch + b) * row + h * d;
        for (int64_t k = 0; k < d; ++k) {
          sum[k] += src[k];
        }
      }
      store_row(sum.data(), outs[m] + h * d, d);
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> cross_attention_backward_cpu(
    const std::optional<at::Tensor>& grad_tt, const std::optional<at::Tensor>& grad_ta,
    const std::optional<at::Tensor>& grad_aa, const std::optional<at::Tensor>& grad_at,
    const at::Tensor& h_text_in, const at::Tensor& h_audio_in, const at::Tensor& q_text,
    const at::Tensor& q_audio, const std::optional<at::Tensor>& lengths_in,
    const at::Tensor& softmax_stats, double scale) {
  BackwardPrep p = prepare_backward(grad_tt, grad_ta, grad_aa, grad_at, h_text_in, h_audio_in,
                                    q_text, q_audio, lengths_in, softmax_stats, scale);
  const Sizes s = p.sizes;
  const at::Tensor &h_text = p.h_text, &h_audio = p.h_audio, &queries = p.queries, &stats = p.stats;
  const auto& lengths = p.lengths;
  const auto& grads = p.grads;
  at::Tensor &grad_h_text = p.grad_h_text, &grad_h_audio = p.grad_h_audio;
  at::Tensor &grad_q_text = p.grad_q_text, &grad_q_audio = p.grad_q_audio;
  at::Tensor partial = at::empty({2, s.batch, s.heads, s.dim}, stats.options());
  FASTSER_DISPATCH_FLOATING_TYPES(h_text.scalar_type(), "cross_attention_backward_cpu", [&] {
    using acc = acc_t<scalar_t>;
    const auto grad_ptr = [](const std::optional<at::Tensor>& g) {
      return g ? g->const_data_ptr<scalar_t>() : nullptr;
    };
    backward_kernel(BackwardArgs<scalar_t>{
        {grad_ptr(grads[0]), grad_ptr(grads[1]), grad_ptr(grads[2]), grad_ptr(grads[3])},
        Frames<scalar_t>(h_text), Frames<scalar_t>(h_audio), queries.const_data_ptr<acc>(),
        lengths ? lengths->const_data_ptr<int64_t>() : nullptr, stats.const_data_ptr<acc>(),
        static_cast<acc>(scale), s, grad_h_text.mutable_data_ptr<scalar_t>(),
        grad_h_audio.mutable_data_ptr<scalar_t>(), partial.mutable_data_ptr<acc>()});
    reduce_query_grads<scalar_t>(partial, s, grad_q_text, grad_q_audio);
  });
  return {grad_h_text, grad_h_audio, grad_q_text, grad_q_audio};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastser, CPU, m) {
  m.impl("cross_attention", &cross_attention_cpu);
  m.impl("cross_attention_backward", &cross_attention_backward_cpu);
}

}  // namespace fastser::cross_attention
