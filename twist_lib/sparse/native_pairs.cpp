// Fused gather-GEMM-scatter for the CPU: the pure-PyTorch backend's sparse convolution
// (twist_lib/sparse/torch_backend.py) without its gathered copies. One kernel offset at a time:
//   twist_gemm_pairs:  out[dst[p], :] += in[src[p], :] @ w        (forward; input gradient)
//   twist_outer_pairs: gw += sum_p in[src[p], :]^T g[dst[p], :]   (weight gradient)
// Single-threaded, float32, rows contiguous. With AVX-512 the output width co = 16 * NV
// (NV = 1..5) is kept in zmm registers over a block of pairs (forward) or of weight rows
// (weight gradient); other widths take the plain loops. Each sum runs over the input channels
// in order, as a GEMM's dot product does. Built and loaded by twist_lib/sparse/native.py;
// measured in bench/NOTES.md, "Speed".
#include <cstdint>
#include <immintrin.h>

#if defined(__AVX512F__)
template <int NV, int PB>
static inline void block(const float* __restrict in, const float* __restrict w, float* __restrict out,
                         const int64_t* __restrict src, const int64_t* __restrict dst, int ci) {
  constexpr int CO = 16 * NV;
  const float* x[PB];
  __m512 acc[PB][NV];
#pragma GCC unroll 8
  for (int i = 0; i < PB; ++i) {
    x[i] = in + src[i] * ci;
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  }
  for (int c = 0; c < ci; ++c) {
    const float* wr = w + c * CO;
    __m512 wv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) wv[v] = _mm512_loadu_ps(wr + 16 * v);
#pragma GCC unroll 8
    for (int i = 0; i < PB; ++i) {
      const __m512 b = _mm512_set1_ps(x[i][c]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(b, wv[v], acc[i][v]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < PB; ++i) {
    float* y = out + dst[i] * CO;
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v)
      _mm512_storeu_ps(y + 16 * v, _mm512_add_ps(_mm512_loadu_ps(y + 16 * v), acc[i][v]));
  }
}

template <int NV>
static void gemm_pairs_t(const float* in, const float* w, float* out, const int64_t* src,
                         const int64_t* dst, int64_t n, int ci) {
  constexpr int PB = NV <= 2 ? 6 : (NV <= 3 ? 5 : (NV == 4 ? 4 : 3));
  int64_t p = 0;
  for (; p + PB <= n; p += PB) block<NV, PB>(in, w, out, src + p, dst + p, ci);
  for (; p < n; ++p) block<NV, 1>(in, w, out, src + p, dst + p, ci);
}
#endif

static void gemm_pairs_any(const float* in, const float* w, float* out, const int64_t* src,
                           const int64_t* dst, int64_t n, int ci, int co) {
  for (int64_t p = 0; p < n; ++p) {
    const float* x = in + src[p] * ci;
    float* y = out + dst[p] * co;
    for (int c = 0; c < ci; ++c) {
      const float b = x[c];
      const float* wr = w + (int64_t)c * co;
      for (int j = 0; j < co; ++j) y[j] += b * wr[j];
    }
  }
}

extern "C" int twist_native_simd() {
#if defined(__AVX512F__)
  return 1;
#else
  return 0;
#endif
}

extern "C" int twist_gemm_pairs(const float* in, const float* w, float* out, const int64_t* src,
                                const int64_t* dst, int64_t n, int ci, int co) {
#if defined(__AVX512F__)
  switch (co) {
    case 16: gemm_pairs_t<1>(in, w, out, src, dst, n, ci); return 0;
    case 32: gemm_pairs_t<2>(in, w, out, src, dst, n, ci); return 0;
    case 48: gemm_pairs_t<3>(in, w, out, src, dst, n, ci); return 0;
    case 64: gemm_pairs_t<4>(in, w, out, src, dst, n, ci); return 0;
    case 80: gemm_pairs_t<5>(in, w, out, src, dst, n, ci); return 0;
    default: break;
  }
#endif
  gemm_pairs_any(in, w, out, src, dst, n, ci, co);
  return 1;
}

#if defined(__AVX512F__)
// gw[c, :] += sum_p x[src[p], c] * g[dst[p], :] for c in [c0, c0 + CB), pairs [0, n): the
// CB x CO block of gw lives in registers while the (few, L1-resident) pairs stream past
template <int NV, int CB>
static inline void outer_block(const float* __restrict x, const float* __restrict g,
                               float* __restrict gw, const int64_t* __restrict src,
                               const int64_t* __restrict dst, int64_t n, int ci, int c0) {
  constexpr int CO = 16 * NV;
  __m512 acc[CB][NV];
#pragma GCC unroll 16
  for (int c = 0; c < CB; ++c)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[c][v] = _mm512_loadu_ps(gw + (int64_t)(c0 + c) * CO + 16 * v);
  for (int64_t p = 0; p < n; ++p) {
    const float* xr = x + src[p] * ci + c0;
    const float* gr = g + dst[p] * CO;
    __m512 gv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) gv[v] = _mm512_loadu_ps(gr + 16 * v);
#pragma GCC unroll 16
    for (int c = 0; c < CB; ++c) {
      const __m512 b = _mm512_set1_ps(xr[c]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[c][v] = _mm512_fmadd_ps(b, gv[v], acc[c][v]);
    }
  }
#pragma GCC unroll 16
  for (int c = 0; c < CB; ++c)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(gw + (int64_t)(c0 + c) * CO + 16 * v, acc[c][v]);
}

template <int NV>
static void outer_t(const float* x, const float* g, float* gw, const int64_t* src,
                    const int64_t* dst, int64_t n, int ci) {
  constexpr int CB = NV == 1 ? 16 : (NV == 2 ? 8 : (NV == 3 ? 6 : 4));
  constexpr int64_t CHUNK = 64;  // pairs whose rows stay in L1 across the channel blocks
  for (int64_t p0 = 0; p0 < n; p0 += CHUNK) {
    const int64_t m = n - p0 < CHUNK ? n - p0 : CHUNK;
    int c0 = 0;
    for (; c0 + CB <= ci; c0 += CB) outer_block<NV, CB>(x, g, gw, src + p0, dst + p0, m, ci, c0);
    for (; c0 < ci; ++c0) outer_block<NV, 1>(x, g, gw, src + p0, dst + p0, m, ci, c0);
  }
}
#endif

static void outer_any(const float* x, const float* g, float* gw, const int64_t* src,
                      const int64_t* dst, int64_t n, int ci, int co) {
  for (int64_t p = 0; p < n; ++p) {
    const float* xr = x + src[p] * ci;
    const float* gr = g + dst[p] * co;
    for (int c = 0; c < ci; ++c) {
      const float b = xr[c];
      float* y = gw + (int64_t)c * co;
      for (int j = 0; j < co; ++j) y[j] += b * gr[j];
    }
  }
}

extern "C" int twist_outer_pairs(const float* x, const float* g, float* gw, const int64_t* src,
                                 const int64_t* dst, int64_t n, int ci, int co) {
#if defined(__AVX512F__)
  switch (co) {
    case 16: outer_t<1>(x, g, gw, src, dst, n, ci); return 0;
    case 32: outer_t<2>(x, g, gw, src, dst, n, ci); return 0;
    case 48: outer_t<3>(x, g, gw, src, dst, n, ci); return 0;
    case 64: outer_t<4>(x, g, gw, src, dst, n, ci); return 0;
    case 80: outer_t<5>(x, g, gw, src, dst, n, ci); return 0;
    default: break;
  }
#endif
  outer_any(x, g, gw, src, dst, n, ci, co);
  return 1;
}

// ---- batch norm + ReLU over rows of c channels (c a multiple of 16): with the batch's mean
// and scale = gamma * invstd, z = (x - mean) * scale + beta (x - mean first, as torch's batch
// norm: at z near 0, where the ReLU's mask is decided, x * scale + shift would cancel), the
// output max(0, z), and its backward in two passes that recompute the mask the same way.
#if defined(__AVX512F__)
static inline __mmask16 live(const float* x, const __m512 m, const __m512 s, const __m512 t,
                             __m512* centred) {
  *centred = _mm512_sub_ps(_mm512_loadu_ps(x), m);
  return _mm512_cmp_ps_mask(_mm512_fmadd_ps(*centred, s, t), _mm512_setzero_ps(), _CMP_GT_OQ);
}

extern "C" int twist_bn_relu_fwd(const float* __restrict x, const float* __restrict mean,
                                 const float* __restrict scale, const float* __restrict beta,
                                 float* __restrict y, int64_t n, int c) {
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t r = 0; r < n; ++r)
    for (int j = 0; j < c; j += 16) {
      const __m512 v = _mm512_fmadd_ps(_mm512_sub_ps(_mm512_loadu_ps(x + r * c + j),
                                                     _mm512_loadu_ps(mean + j)),
                                       _mm512_loadu_ps(scale + j), _mm512_loadu_ps(beta + j));
      _mm512_storeu_ps(y + r * c + j, _mm512_max_ps(v, zero));
    }
  return 0;
}

// sum_g[j] = sum_r g'[r, j], sum_gx[j] = sum_r g'[r, j] * (x[r, j] - mean[j]), g' = g where
// z > 0, else 0; float within 256-row chunks, double across them
extern "C" int twist_bn_relu_bwd_reduce(const float* __restrict x, const float* __restrict g,
                                        const float* __restrict mean,
                                        const float* __restrict scale,
                                        const float* __restrict beta, double* __restrict sum_g,
                                        double* __restrict sum_gx, int64_t n, int c) {
  float acc_g[1024], acc_gx[1024];
  if (c > 1024) return 1;
  for (int64_t r0 = 0; r0 < n; r0 += 256) {
    const int64_t r1 = n - r0 < 256 ? n : r0 + 256;
    for (int j = 0; j < c; j += 16) {
      __m512 ag = _mm512_setzero_ps(), agx = _mm512_setzero_ps(), xc;
      const __m512 m = _mm512_loadu_ps(mean + j), s = _mm512_loadu_ps(scale + j),
                   t = _mm512_loadu_ps(beta + j);
      for (int64_t r = r0; r < r1; ++r) {
        const __mmask16 on = live(x + r * c + j, m, s, t, &xc);
        const __m512 gv = _mm512_maskz_loadu_ps(on, g + r * c + j);
        ag = _mm512_add_ps(ag, gv);
        agx = _mm512_fmadd_ps(gv, xc, agx);
      }
      _mm512_storeu_ps(acc_g + j, ag);
      _mm512_storeu_ps(acc_gx + j, agx);
    }
    for (int j = 0; j < c; ++j) { sum_g[j] += acc_g[j]; sum_gx[j] += acc_gx[j]; }
  }
  return 0;
}

// dx = a * g' + b * (x - mean) + d, per channel a, b, d (batch norm's backward with the
// statistics' gradients folded into b and d)
extern "C" int twist_bn_relu_bwd_dx(const float* __restrict x, const float* __restrict g,
                                    const float* __restrict mean, const float* __restrict scale,
                                    const float* __restrict beta, const float* __restrict a,
                                    const float* __restrict b, const float* __restrict d,
                                    float* __restrict dx, int64_t n, int c) {
  for (int64_t r = 0; r < n; ++r)
    for (int j = 0; j < c; j += 16) {
      __m512 xc;
      const __mmask16 on = live(x + r * c + j, _mm512_loadu_ps(mean + j),
                                _mm512_loadu_ps(scale + j), _mm512_loadu_ps(beta + j), &xc);
      const __m512 gv = _mm512_maskz_loadu_ps(on, g + r * c + j);
      const __m512 v = _mm512_fmadd_ps(_mm512_loadu_ps(b + j), xc, _mm512_loadu_ps(d + j));
      _mm512_storeu_ps(dx + r * c + j, _mm512_fmadd_ps(_mm512_loadu_ps(a + j), gv, v));
    }
  return 0;
}
#endif

// per-channel mean and biased variance of x (n rows of c), two passes (the variance from
// centred squares), float within 256-row chunks, double across them
#if defined(__AVX512F__)
extern "C" int twist_col_stats(const float* __restrict x, double* __restrict mean,
                               double* __restrict var, int64_t n, int c) {
  float acc[1024];
  if (c > 1024 || n < 1) return 1;
  for (int pass = 0; pass < 2; ++pass) {
    double* out = pass == 0 ? mean : var;
    float centre[1024];
    for (int j = 0; j < c; ++j) { centre[j] = pass == 0 ? 0.f : (float)mean[j]; out[j] = 0.0; }
    for (int64_t r0 = 0; r0 < n; r0 += 256) {
      const int64_t r1 = n - r0 < 256 ? n : r0 + 256;
      for (int j = 0; j < c; j += 16) {
        __m512 a = _mm512_setzero_ps();
        const __m512 m = _mm512_loadu_ps(centre + j);
        for (int64_t r = r0; r < r1; ++r) {
          const __m512 v = _mm512_sub_ps(_mm512_loadu_ps(x + r * c + j), m);
          a = pass == 0 ? _mm512_add_ps(a, v) : _mm512_fmadd_ps(v, v, a);
        }
        _mm512_storeu_ps(acc + j, a);
      }
      for (int j = 0; j < c; ++j) out[j] += acc[j];
    }
    for (int j = 0; j < c; ++j) out[j] /= (double)n;
  }
  return 0;
}
#endif
