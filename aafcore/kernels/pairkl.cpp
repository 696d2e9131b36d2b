// The fused CPU kernel of the AAF pair sums (aafcore.pairs, backend "cpp"): forward and backward
// of the per-(size, key) sums of the edge and non-edge affinity terms, one image at a time.
//
// Each image of H x W pixels is copied onto a grid padded by pad = max(s) cells on every side,
// S = (H + 2 pad)(W + 2 pad) cells, flattened row-major (aafcore.pairs._Flat).  The domain is
// the run of L = (H - 1)(W + 2 pad) + W cells from `start` (the first image pixel) to the last;
// a corner offset o_t is a shift of the flat index by steps[t], and for every domain cell i the
// cells i + o_t and i - o_t stay on the grid.  Padding cells carry the label -1, so a pair that
// leaves the image is invalid; their probabilities are 1/2 (finite logarithms, always masked).
//
// With q = clip(p, 1e-4, 1), qb = clip(1 - p, 1e-4, 1), lq = log q, lqb = log qb, j = i + o,
//   V(i, o) = [y_i >= 0][y_j >= 0][y_{i-o} >= 0],  E(i, o) = V(i, o) [y_i != y_j],
//   KL_c(i, o) = q_{j,c} (lq_{j,c} - lq_{i,c}) + qb_{j,c} (lqb_{j,c} - lqb_{i,c}).
// For an edge pair exactly the channels a = y_i and b = y_j are edges, so for size k
//   edge[k, key]     = sum_E max(0, m - KL_a) + max(0, m - KL_b)
//   non_edge[k, key] = sum_V sum_c KL_c  -  sum_E (KL_a + KL_b)
// with key = y_i (by label, the official code) or the channel (by channel, Eq. 7).  The sum over
// all channels is dense, with h = q lq + qb lqb:
//   sum_c KL_c(i, o) = sum_c h_{j,c} - sum_c (lq_{i,c} q_{j,c} + lqb_{i,c} qb_{j,c}).
// Dense loops run over contiguous cells with the 8 offsets of a size unrolled (a shift is a
// pointer offset), so they vectorise; the two edge channels are computed for *every* pair and
// multiplied by the edge mask, so the work does not depend on the labels.  Sums over many
// terms are accumulated in double.  Work arrays are per thread and reused between calls.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

constexpr double kClip = 1e-4;

// log for x in [1e-4, 1]: float with a polynomial that vectorises (max error ~ 1 ulp), double
// with std::log.
inline float vlog(float x) {
  const int32_t bits = __builtin_bit_cast(int32_t, x);
  int32_t e = ((bits >> 23) & 0xff) - 126;  // x = m 2^e, m in [0.5, 1)
  const float m = __builtin_bit_cast(float, (bits & 0x007fffff) | 0x3f000000);
  const int32_t low = m < 0.70710678f;  // fold m into [sqrt(1/2), sqrt(2))
  e -= low;
  const float f = m + (low ? m : 0.0f) - 1.0f;
  const float z = f * f;
  float y = 7.0376836292e-2f;
  y = y * f - 1.1514610310e-1f;
  y = y * f + 1.1676998740e-1f;
  y = y * f - 1.2420140846e-1f;
  y = y * f + 1.4249322787e-1f;
  y = y * f - 1.6668057665e-1f;
  y = y * f + 2.0000714765e-1f;
  y = y * f - 2.4999993993e-1f;
  y = y * f + 3.3333331174e-1f;
  y = y * f * z;
  const float fe = float(e);
  y += -2.12194440e-4f * fe;
  y += -0.5f * z;
  return (f + y) + 0.693359375f * fe;
}
inline double vlog(double x) { return std::log(x); }

template <typename T>
struct Work {
  std::vector<T> q, qb, lq, lqb, packed, own, v, w, px, dq, dqb, cross;
  std::vector<int64_t> y;
};

template <typename T>
Work<T>& work() {
  thread_local Work<T> wk;
  return wk;
}

template <typename T>
void fit(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

struct Shape {
  int64_t c, h, w, pad, k, ignore;
  const int64_t* steps;  // [8 k]
  int64_t wp, s, start, l, margin, lv;
  Shape(int64_t c_, int64_t h_, int64_t w_, int64_t pad_, int64_t k_, int64_t ignore_, const int64_t* steps_)
      : c(c_), h(h_), w(w_), pad(pad_), k(k_), ignore(ignore_), steps(steps_) {
    wp = w + 2 * pad;
    s = (h + 2 * pad) * wp;
    start = pad * wp + pad;
    l = (h - 1) * wp + w;
    margin = pad * wp + pad;  // the largest |step|
    lv = l + 2 * margin;
  }

  // V_t on the margined pair-mask array
  template <typename T>
  const T* mask(const std::vector<T>& v, int64_t t) const {
    return v.data() + t * lv + margin;
  }
};

// The image on the grid: labels y [S], q, qb, lq, lqb [C, S], the same channel-last for the edge
// channels' look-ups, packed = (q, qb, lq, lqb) [S, C, 4] (one cache line per look-up, wherever
// the label points), the own-label maps own = (q, qb, lq, lqb)_{y_s} [4, S] and the pair masks
// V [P, M + L + M] (zero margins of M = the largest |step|: V(i - o) can be read for every domain
// cell i).  Adds the pairs and edge pairs per size to the counts.
template <typename T>
void prepare(const Shape& g, const T* p, const int64_t* labels, Work<T>& wk, int64_t* n_pairs, int64_t* n_edges) {
  const int64_t C = g.c, S = g.s, L = g.l, P = 8 * g.k;
  fit(wk.y, S);
  fit(wk.q, C * S), fit(wk.qb, C * S), fit(wk.lq, C * S), fit(wk.lqb, C * S), fit(wk.packed, 4 * C * S), fit(wk.own, 4 * S);
  const int64_t LV = L + 2 * g.margin;
  fit(wk.v, P * LV);
  std::fill(wk.v.begin(), wk.v.begin() + P * LV, T(0));
  int64_t* y = wk.y.data();
  std::fill(y, y + S, int64_t(-1));
  for (int64_t r = 0; r < g.h; ++r)
    for (int64_t x = 0; x < g.w; ++x) {
      const int64_t lab = labels[r * g.w + x];
      y[(r + g.pad) * g.wp + x + g.pad] = lab == g.ignore ? -1 : lab;
    }
  const T half = T(0.5), lhalf = vlog(half);
  for (int64_t c = 0; c < C; ++c) {
    T *q = wk.q.data() + c * S, *qb = wk.qb.data() + c * S, *lq = wk.lq.data() + c * S, *lqb = wk.lqb.data() + c * S;
    std::fill(q, q + S, half), std::fill(qb, qb + S, half), std::fill(lq, lq + S, lhalf), std::fill(lqb, lqb + S, lhalf);
    for (int64_t r = 0; r < g.h; ++r) {
      const T* __restrict__ src = p + (c * g.h + r) * g.w;
      const int64_t row = (r + g.pad) * g.wp + g.pad;
      T* __restrict__ qr = q + row;
      T* __restrict__ qbr = qb + row;
      T* __restrict__ lqr = lq + row;
      T* __restrict__ lqbr = lqb + row;
      for (int64_t x = 0; x < g.w; ++x) {
        const T a = src[x] < T(kClip) ? T(kClip) : src[x], b = T(1) - src[x] < T(kClip) ? T(kClip) : T(1) - src[x];
        qr[x] = a < T(1) ? a : T(1);
        qbr[x] = b < T(1) ? b : T(1);
      }
      for (int64_t x = 0; x < g.w; ++x) lqr[x] = vlog(qr[x]);
      for (int64_t x = 0; x < g.w; ++x) lqbr[x] = vlog(qbr[x]);
    }
  }
  for (int64_t c = 0; c < C; ++c) {
    const T *q = wk.q.data() + c * S, *qb = wk.qb.data() + c * S, *lq = wk.lq.data() + c * S, *lqb = wk.lqb.data() + c * S;
    T* pk = wk.packed.data() + 4 * c;
    for (int64_t x = 0; x < S; ++x) {
      T* cell = pk + 4 * C * x;
      cell[0] = q[x], cell[1] = qb[x], cell[2] = lq[x], cell[3] = lqb[x];
    }
  }
  T* own = wk.own.data();
  for (int64_t x = 0; x < S; ++x) {
    const int64_t c = y[x] < 0 ? 0 : y[x];
    own[x] = wk.q[c * S + x], own[S + x] = wk.qb[c * S + x];
    own[2 * S + x] = wk.lq[c * S + x], own[3 * S + x] = wk.lqb[c * S + x];
  }
  for (int64_t t = 0; t < P; ++t) {
    const int64_t st = g.steps[t];
    int64_t pairs = 0, edges = 0;
    T* vt = wk.v.data() + t * LV + g.margin;
    for (int64_t l = 0; l < L; ++l) {
      const int64_t i = g.start + l;
      const bool ok = y[i] >= 0 && y[i + st] >= 0 && y[i - st] >= 0;
      vt[l] = ok ? T(1) : T(0);
      pairs += ok;
      edges += ok && y[i] != y[i + st];
    }
    n_pairs[t / 8] += pairs;
    n_edges[t / 8] += edges;
  }
}

// The pair (i, j = i + o) at its two edge channels a = y_i and b = y_j (0 where ignored; the edge
// mask is 0 there): the packed look-ups A = (q, qb, lq, lqb) of channel a at j and B of channel b
// at i, and KL_a(i, o), KL_b(i, o) from them and the own-label maps (channel a at i, b at j).
template <typename T>
struct EdgePair {
  int64_t a, b;
  const T *A, *B;
  T kl_a, kl_b;
  EdgePair(const T* packed, const T* own, int64_t S, int64_t C, int64_t i, int64_t j, int64_t yi, int64_t yj)
      : a(yi < 0 ? 0 : yi), b(yj < 0 ? 0 : yj), A(packed + 4 * (j * C + a)), B(packed + 4 * (i * C + b)) {
    kl_a = A[0] * (A[2] - own[2 * S + i]) + A[1] * (A[3] - own[3 * S + i]);
    kl_b = own[j] * (own[2 * S + j] - B[2]) + own[S + j] * (own[3 * S + j] - B[3]);
  }
};

template <typename T>
inline T hinge(T margin, T x) {
  return margin - x > T(0) ? margin - x : T(0);
}

// edge, non_edge [K, C] (double, accumulated into), counts [2, K] (pairs, edge pairs).
template <typename T>
void forward(const Shape& g, const T* p, const int64_t* labels, double margin, int by_channel, double* edge,
             double* non_edge, int64_t* counts) {
  Work<T>& wk = work<T>();
  prepare(g, p, labels, wk, counts, counts + g.k);
  const int64_t C = g.c, S = g.s, L = g.l, K = g.k, P = 8 * K, st0 = g.start;
  const int64_t* y = wk.y.data();
  const T *Q = wk.q.data(), *QB = wk.qb.data(), *LQ = wk.lq.data(), *LQB = wk.lqb.data(), *own = wk.own.data();
  const T* PK = wk.packed.data();
  // px: dense [K, L] (by label) or received counts [K, S] (by channel), then the edge terms
  // [2, K, S]: hinge and KL of channel a at i, and (by channel) of channel b at j.
  fit(wk.px, K * S + 4 * K * S);
  T* dense = wk.px.data();
  T* ed = dense + K * S;
  std::fill(wk.px.begin(), wk.px.begin() + K * S + 4 * K * S, T(0));
  if (!by_channel) {
    std::vector<T> hsum(S, T(0));  // sum_c h_{s, c}
    for (int64_t c = 0; c < C; ++c) {
      const T *q = Q + c * S, *qb = QB + c * S, *lq = LQ + c * S, *lqb = LQB + c * S;
      for (int64_t x = 0; x < S; ++x) hsum[x] += q[x] * lq[x] + qb[x] * lqb[x];
    }
    for (int64_t k = 0; k < K; ++k) {
      T* __restrict__ out = dense + k * L;
      for (int64_t t = 8 * k; t < 8 * k + 8; ++t) {
        const T* __restrict__ vt = g.mask(wk.v, t);
        const T* __restrict__ hj = hsum.data() + st0 + g.steps[t];
        for (int64_t l = 0; l < L; ++l) out[l] += vt[l] * hj[l];
      }
    }
  } else {
    for (int64_t t = 0; t < P; ++t) {
      const T* __restrict__ vt = g.mask(wk.v, t);
      T* __restrict__ rj = dense + (t / 8) * S + st0 + g.steps[t];
      for (int64_t l = 0; l < L; ++l) rj[l] += vt[l];
    }
  }
  // sum_c (lq_i . acc), acc = sum_t V_t(i) (q, qb)_{i+o_t}, in tiles of TL cells (the 8 mask rows of
  // a size stay in L1 for all channels); by channel, its sum over cells per (size, channel).
  constexpr int64_t TL = 256;
  alignas(64) T row[TL];
  for (int64_t l0 = 0; l0 < L; l0 += TL) {
    const int64_t n = std::min(TL, L - l0), i0 = st0 + l0;
    for (int64_t k = 0; k < K; ++k) {
      const T* vt[8];
      for (int t = 0; t < 8; ++t) vt[t] = g.mask(wk.v, 8 * k + t) + l0;
      for (int64_t c = 0; c < C; ++c) {
        const T *q = Q + c * S + i0, *qb = QB + c * S + i0, *lq = LQ + c * S + i0, *lqb = LQB + c * S + i0;
        const T *qj[8], *qbj[8];
        for (int t = 0; t < 8; ++t) qj[t] = q + g.steps[8 * k + t], qbj[t] = qb + g.steps[8 * k + t];
        T* __restrict__ out = by_channel ? row : dense + k * L + l0;
        if (by_channel) std::fill(row, row + n, T(0));
#pragma GCC ivdep
        for (int64_t u = 0; u < n; ++u) {
          T aq = 0, aqb = 0;
          for (int t = 0; t < 8; ++t) aq += vt[t][u] * qj[t][u], aqb += vt[t][u] * qbj[t][u];
          out[u] -= lq[u] * aq + lqb[u] * aqb;
        }
        if (by_channel) {
          double cross = 0;
          for (int64_t u = 0; u < n; ++u) cross += double(row[u]);
          non_edge[k * C + c] += cross;
        }
      }
    }
  }
  if (by_channel) {  // sum_i sum_o V h_{i+o, c} = sum_j (pairs whose neighbour is j) h_{j, c}
    for (int64_t k = 0; k < K; ++k) {
      const T* rk = dense + k * S;
      for (int64_t c = 0; c < C; ++c) {
        const T *q = Q + c * S, *qb = QB + c * S, *lq = LQ + c * S, *lqb = LQB + c * S;
        double h = 0;
        for (int64_t x = 0; x < S; ++x) h += double(rk[x] * (q[x] * lq[x] + qb[x] * lqb[x]));
        non_edge[k * C + c] += h;
      }
    }
  }
  // The two edge channels of every pair, times the edge mask: a = y_i (own at i, cross at j),
  // b = y_j (own at j, cross at i).
  const T m = T(margin);
  for (int64_t t = 0; t < P; ++t) {
    const int64_t k = t / 8, st = g.steps[t];
    const T* vt = g.mask(wk.v, t);
    T *ha = ed + k * S, *ka = ed + (K + k) * S, *hb = ed + (2 * K + k) * S, *kb = ed + (3 * K + k) * S;
    for (int64_t l = 0; l < L; ++l) {
      const int64_t i = st0 + l, j = i + st;
      const T e = (y[i] != y[j]) ? vt[l] : T(0);
      const EdgePair<T> pr(PK, own, S, C, i, j, y[i], y[j]);
      const T kl_a = pr.kl_a, kl_b = pr.kl_b;
      ha[i] += e * hinge(m, kl_a), ka[i] += e * kl_a;
      if (by_channel)
        hb[j] += e * hinge(m, kl_b), kb[j] += e * kl_b;
      else
        ha[i] += e * hinge(m, kl_b), ka[i] += e * kl_b;
    }
  }
  for (int64_t k = 0; k < K; ++k) {
    double *ek = edge + k * C, *nk = non_edge + k * C;
    const T *ha = ed + k * S, *ka = ed + (K + k) * S, *hb = ed + (2 * K + k) * S, *kb = ed + (3 * K + k) * S;
    for (int64_t x = 0; x < S; ++x) {
      if (y[x] < 0) continue;
      ek[y[x]] += double(ha[x]) + double(hb[x]);
      nk[y[x]] -= double(ka[x]) + double(kb[x]);
    }
    if (!by_channel) {
      const T* dk = dense + k * L;
      for (int64_t l = 0; l < L; ++l)
        if (y[st0 + l] >= 0) nk[y[st0 + l]] += double(dk[l]);
    }
  }
}

// dp [C, H, W] = d/dp of  sum g_edge . edge + g_non . non_edge  (g_* [K, C]).
template <typename T>
void backward(const Shape& g, const T* p, const int64_t* labels, double margin, int by_channel, const T* g_edge,
              const T* g_non, T* dp) {
  Work<T>& wk = work<T>();
  const int64_t C = g.c, S = g.s, L = g.l, K = g.k, P = 8 * K, st0 = g.start;
  std::vector<int64_t> counts(2 * K, 0);
  prepare(g, p, labels, wk, counts.data(), counts.data() + K);
  const int64_t* y = wk.y.data();
  const T *Q = wk.q.data(), *QB = wk.qb.data(), *LQ = wk.lq.data(), *LQB = wk.lqb.data(), *own = wk.own.data();
  fit(wk.dq, C * S), fit(wk.dqb, C * S), fit(wk.px, 2 * S), fit(wk.w, K * S);
  std::fill(wk.dq.begin(), wk.dq.begin() + C * S, T(0));
  std::fill(wk.dqb.begin(), wk.dqb.begin() + C * S, T(0));
  // The coefficient of KL_c(i, o) is w_t(i) beta_k(c): w_t(i) = V(i, o_t) alpha_k(i) with
  // alpha = g_non[k, y_i], beta = 1 (by label) or alpha = 1, beta = g_non[k, c] (by channel).
  T* alpha = wk.w.data();  // [K, S]
  for (int64_t k = 0; k < K; ++k)
    for (int64_t x = 0; x < S; ++x) alpha[k * S + x] = by_channel || y[x] < 0 ? T(1) : g_non[k * C + y[x]];
  // Dense part, for every domain cell i and channel: as a centre (d/dlq_i = -sum_t w_t(i) q_{i+o_t}),
  // as a neighbour (d/dq_i = -sum_t w_t(i - o_t) lq_{i-o_t}) and through h (d/dh_i = sum_t w_t(i - o_t)).
  // Tiles of TL cells: the 16 coefficient rows of a size are built once per tile for all channels.
  constexpr int64_t TL = 256;
  alignas(64) T wbuf[16][TL];
  for (int64_t l0 = 0; l0 < L; l0 += TL) {
    const int64_t n = std::min(TL, L - l0), i0 = st0 + l0;
    for (int64_t k = 0; k < K; ++k) {
      const T* ak = alpha + k * S;
      for (int t = 0; t < 8; ++t) {
        const int64_t st = g.steps[8 * k + t];
        const T* vt = g.mask(wk.v, 8 * k + t) + l0;
        for (int64_t u = 0; u < n; ++u) {
          wbuf[t][u] = vt[u] * ak[i0 + u];
          wbuf[8 + t][u] = vt[u - st] * ak[i0 + u - st];
        }
      }
      for (int64_t c = 0; c < C; ++c) {
        const T beta = by_channel ? g_non[k * C + c] : T(1);
        const T *q = Q + c * S + i0, *qb = QB + c * S + i0, *lq = LQ + c * S + i0, *lqb = LQB + c * S + i0;
        const T *qj[8], *qbj[8], *lqm[8], *lqbm[8];
        for (int t = 0; t < 8; ++t) {
          const int64_t st = g.steps[8 * k + t];
          qj[t] = q + st, qbj[t] = qb + st, lqm[t] = lq - st, lqbm[t] = lqb - st;
        }
        T* __restrict__ dqi = wk.dq.data() + c * S + i0;
        T* __restrict__ dqbi = wk.dqb.data() + c * S + i0;
#pragma GCC ivdep
        for (int64_t u = 0; u < n; ++u) {
          T gq = 0, gqb = 0, nq = 0, nqb = 0, rh = 0;
          for (int t = 0; t < 8; ++t) {
            gq += wbuf[t][u] * qj[t][u], gqb += wbuf[t][u] * qbj[t][u];
            nq += wbuf[8 + t][u] * lqm[t][u], nqb += wbuf[8 + t][u] * lqbm[t][u], rh += wbuf[8 + t][u];
          }
          dqi[u] += beta * (rh * (lq[u] + T(1)) - nq - gq / q[u]);
          dqbi[u] += beta * (rh * (lqb[u] + T(1)) - nqb - gqb / qb[u]);
        }
      }
    }
  }
  // Edge channels: d/dKL_x = -(g_edge[k, key] [m - KL_x > 0] + g_non[k, key]) on edge pairs; the
  // gradients of the look-ups go channel-last to cross [S, C, 2], those of the own labels to down.
  fit(wk.cross, 2 * C * S);
  T* cross = wk.cross.data();
  std::fill(cross, cross + 2 * C * S, T(0));
  T* down = wk.px.data();  // d/d(q, qb)_{s, y_s} [2, S]
  std::fill(down, down + 2 * S, T(0));
  const T* PK = wk.packed.data();
  const T m = T(margin);
  for (int64_t t = 0; t < P; ++t) {
    const int64_t k = t / 8, st = g.steps[t];
    const T* vt = g.mask(wk.v, t);
    const T *ge = g_edge + k * C, *gn = g_non + k * C;
    for (int64_t l = 0; l < L; ++l) {
      const int64_t i = st0 + l, j = i + st;
      const T e = (y[i] != y[j]) ? vt[l] : T(0);
      const EdgePair<T> pr(PK, own, S, C, i, j, y[i], y[j]);
      const int64_t a = pr.a, b = pr.b, aj = j * C + a, bi = i * C + b;
      const T *A = pr.A, *B = pr.B, kl_a = pr.kl_a, kl_b = pr.kl_b;
      const int64_t kb = by_channel ? b : a;
      const T d_a = -e * ((m - kl_a > T(0) ? ge[a] : T(0)) + gn[a]);
      const T d_b = -e * ((m - kl_b > T(0) ? ge[kb] : T(0)) + gn[kb]);
      cross[2 * aj] += d_a * (A[2] + T(1) - own[2 * S + i]);
      cross[2 * aj + 1] += d_a * (A[3] + T(1) - own[3 * S + i]);
      down[i] -= d_a * A[0] / own[i];
      down[S + i] -= d_a * A[1] / own[S + i];
      down[j] += d_b * (own[2 * S + j] + T(1) - B[2]);
      down[S + j] += d_b * (own[3 * S + j] + T(1) - B[3]);
      cross[2 * bi] -= d_b * own[j] / B[0];
      cross[2 * bi + 1] -= d_b * own[S + j] / B[1];
    }
  }
  T *DQ = wk.dq.data(), *DQB = wk.dqb.data();
  for (int64_t x = 0; x < S; ++x)
    if (y[x] >= 0) DQ[y[x] * S + x] += down[x], DQB[y[x] * S + x] += down[S + x];
  for (int64_t c = 0; c < C; ++c) {
    T* __restrict__ dq = DQ + c * S;
    T* __restrict__ dqb = DQB + c * S;
    const T* __restrict__ cc = cross + 2 * c;
    for (int64_t x = 0; x < S; ++x) dq[x] += cc[2 * C * x], dqb[x] += cc[2 * C * x + 1];
  }
  // dq/dp = [p >= clip], dqb/dp = -[1 - p >= clip]
  for (int64_t c = 0; c < C; ++c)
    for (int64_t r = 0; r < g.h; ++r) {
      const T* __restrict__ pr = p + (c * g.h + r) * g.w;
      T* __restrict__ out = dp + (c * g.h + r) * g.w;
      const T* __restrict__ a = DQ + c * S + (r + g.pad) * g.wp + g.pad;
      const T* __restrict__ b = DQB + c * S + (r + g.pad) * g.wp + g.pad;
      for (int64_t x = 0; x < g.w; ++x)
        out[x] = (pr[x] >= T(kClip) ? a[x] : T(0)) - (T(1) - pr[x] >= T(kClip) ? b[x] : T(0));
    }
}

}  // namespace

// C entry points (ctypes) for images [first, last) of a batch p [N, C, H, W], labels [N, H, W];
// edge, non_edge [N, K, C] double, counts [N, 2, K], dp [N, C, H, W].
extern "C" {

#define AAF_ENTRY(T, SUFFIX)                                                                              \
  void aaf_pairkl_forward_##SUFFIX(int64_t first, int64_t last, int64_t c, int64_t h, int64_t w, int64_t pad, \
                                   int64_t k, const int64_t* steps, const T* p, const int64_t* labels,      \
                                   int64_t ignore, double margin, int by_channel, double* edge,             \
                                   double* non_edge, int64_t* counts) {                                     \
    const Shape g(c, h, w, pad, k, ignore, steps);                                                       \
    for (int64_t n = first; n < last; ++n)                                                                 \
      forward<T>(g, p + n * c * h * w, labels + n * h * w, margin, by_channel, edge + n * k * c,           \
                 non_edge + n * k * c, counts + n * 2 * k);                                                 \
  }                                                                                                        \
  void aaf_pairkl_backward_##SUFFIX(int64_t first, int64_t last, int64_t c, int64_t h, int64_t w,         \
                                    int64_t pad, int64_t k, const int64_t* steps, const T* p,                \
                                    const int64_t* labels, int64_t ignore, double margin, int by_channel,    \
                                    const T* g_edge, const T* g_non, T* dp) {                              \
    const Shape g(c, h, w, pad, k, ignore, steps);                                                       \
    for (int64_t n = first; n < last; ++n)                                                                 \
      backward<T>(g, p + n * c * h * w, labels + n * h * w, margin, by_channel, g_edge, g_non,            \
                  dp + n * c * h * w);                                                                      \
  }

AAF_ENTRY(float, f32)
AAF_ENTRY(double, f64)

}  // extern "C"
