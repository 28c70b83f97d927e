#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
// kernel "conv_transpose_1d", depthwise layers (cig == 1, cog == 1, G = channels), for CPU Vulkan
// devices such as lavapipe. Same piece-local problem as conv_transpose_1d_sg.comp:
//   out[n, g, i] = (has_bias ? bias[g] : 0) + sum over m < lw, q < K with i + pad == m*s + q*d
//                  of x[n, g, m] * w[g, 0, q]                for n < nb, g < G, i < tw
//
// Each lane owns one channel (the workgroup covers WG channels) and walks a range of the output:
// its filter taps are loaded once, and every multiply-add instruction serves WG channels at once.
//
// Fast path (spec constants S = s and KS = K, only when d == 1): outputs are visited in blocks of
// S*P consecutive outputs i = S*j + ph - pad (j in [j0, j0+P), ph < S); output (j, ph) is
//   sum over t < T(ph) of x[j - t] * w[ph + S*t],   T(ph) = ceil((KS - ph) / S)
// so a block needs the inputs [j0 - TM + 1, j0 + P) (TM = ceil(KS/S)): P new ones are read as
// vec4 per lane and the TM-1 older ones are carried from the previous block.
// Generic path (S == 0: any s, d, K): one output at a time, visiting only the taps that land.
//
// Bindings:
//   0 x    float (nb, G, ldx), input m of channel c at c*ldx + xoff + m. Fast path: xoff and ldx are
//          multiples of 4 and the row has zero margins of at least xoff >= TM-1 (rounded up to 4)
//          before and P+4 after the data (host.dw_x_layout); generic path: any xoff, ldx
//          (reads are clamped and masked)
//   1 w    float (G, KP): the taps of channel g at g*KP + q, KP = K rounded up to 4, zero padded
//          (host.dw_repack_weights)
//   2 bias float (G,) (any 1-float buffer when has_bias == 0)
//   3 out  float (nb, G, tw) contiguous
// Push block (uint, pad signed), in this order:
//   G K s d pad lw tw xoff ldx has_bias jlo JB NJB gd P Dp inv KP grid_x grid_y grid_z
//   Fast path: j runs over [jlo, floor((tw-1+pad)/S) + 1) (jlo = floor(pad/S) rounded down to 4);
//   workgroup x takes [jlo + x*JB, +JB) (JB a multiple of P). Generic path: workgroup x takes outputs
//   [x*JB, x*JB + JB). gd, P, Dp, inv as in conv_transpose_1d_sg (generic path only).
// Grid: (NJB, ceil(G / WG), nb).
// Spec constants: 0 WG (lanes = channels per workgroup), 1 S (stride of the fast path, 0 = generic),
//   2 KS (taps of the fast path), 3 P (inputs per block, multiple of 4), 4 OV (output vector width
//   1, 2 or 4: the host picks the largest dividing tw, pad and S*P), 5 EDGE_SELECT (weights hold
//   inf/NaN: products of taps that miss the input are discarded instead of being 0 * w).
// Requirements: no subgroup operations; any subgroup size.
// Why it is fast on llvmpipe: lanes are channels, so every arithmetic instruction is a full
// 8-wide vector of useful work, the taps are registers, and memory traffic is one vec4 load per 4
// inputs and one OV-wide store per OV outputs per lane (loads and stores, not FMAs, are the cost).

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;
layout(constant_id = 1) const uint S = 2;
layout(constant_id = 2) const uint KS = 12;
layout(constant_id = 3) const uint P = 16;
layout(constant_id = 4) const uint OV = 2;
layout(constant_id = 5) const bool EDGE_SELECT = false;
const uint SS = S + uint(S == 0u);                // S, or 1 for the generic path (array sizes)
const uint TM = (KS + SS - 1u) / SS;               // taps of phase 0 (the most)
const uint WIN = P + TM - 1;                       // inputs a block needs
const uint P4 = P / 4u;

#ifdef VKCONVT_F16
layout(std430, binding = 0) readonly buffer BufX { uint x_h[]; };       // (nb, G, ldx)
#define LD_x(i) unpackHalf2x16(x_h[(i) >> 1])[(i) & 1u]
#else
layout(std430, binding = 0) readonly buffer BufX { float x[]; };       // (nb, G, ldx)
#define LD_x(i) x[i]
#endif
#ifdef VKCONVT_F16
layout(std430, binding = 0) readonly buffer BufX4 { uvec2 x4_h[]; };
#define LD_x4(i) h4(x4_h[i])
#else
layout(std430, binding = 0) readonly buffer BufX4 { vec4 x4[]; };
#define LD_x4(i) x4[i]
#endif
#ifdef VKCONVT_F16
layout(std430, binding = 1) readonly buffer BufW { uint w_h[]; };       // (G, KP)
#define LD_w(i) unpackHalf2x16(w_h[(i) >> 1])[(i) & 1u]
#else
layout(std430, binding = 1) readonly buffer BufW { float w[]; };       // (G, KP)
#define LD_w(i) w[i]
#endif
#ifdef VKCONVT_F16
layout(std430, binding = 1) readonly buffer BufW4 { uvec2 w4_h[]; };
#define LD_w4(i) h4(w4_h[i])
#else
layout(std430, binding = 1) readonly buffer BufW4 { vec4 w4[]; };
#define LD_w4(i) w4[i]
#endif
layout(std430, binding = 2) readonly buffer BufBias { float bias[]; }; // (G,) or (1,) unused
layout(std430, binding = 3) writeonly buffer BufOut { float outp[]; }; // (nb, G, tw)
layout(std430, binding = 3) writeonly buffer BufOut2 { vec2 outp2[]; };
layout(std430, binding = 3) writeonly buffer BufOut4 { vec4 outp4[]; };

layout(push_constant) uniform Push {
    uint G; uint K; uint s; uint d; int pad; uint lw; uint tw; uint xoff; uint ldx; uint has_bias;
    int jlo; uint JB; uint NJB; uint gd; uint P; uint Dp; uint inv; uint KP;
    uint act; float act_slope; uint in_act; float in_slope;
    uint grid_x; uint grid_y; uint grid_z;
} pc;

#include "common.glsl"
#include "act_in.glsl"
#include "act_out.glsl"



void store1(uint row, int i, float v) {
    if (i >= 0 && i < int(pc.tw)) outp[row + uint(i)] = v;
}

void group(uvec3 G) {
    const uint WG = gl_WorkGroupSize.x;
    const uint c = G.y * WG + gl_LocalInvocationID.x;
    const bool live = c < pc.G;
    const uint cl = min(c, pc.G - 1u);
    const uint n = G.z;
    const uint xrow = (n * pc.G + cl) * pc.ldx + pc.xoff;
    const uint orow = (n * pc.G + cl) * pc.tw;
    const float b = pc.has_bias != 0u ? bias[cl] : 0.0;
    const vec2 ab = act_coef(cl, pc.G);
    const int pad = int(pc.pad);
    const int lw = int(pc.lw);

    if (S != 0u) {
        // ---------------------------------------------------------------- fast path (d == 1)
        float wt[KS];
        [[unroll]] for (uint q = 0u; q < KS; q += 4u) {
            const vec4 v = LD_w4((cl * pc.KP + q) / 4u);
            [[unroll]] for (uint e = 0u; e < 4u; ++e) if (q + e < KS) wt[q + e] = v[e];
        }
        const int jstart = int(pc.jlo) + int(G.x * pc.JB);
        // blocks past the last output (i <= tw - 1) are skipped
        const int jend = min(jstart + int(pc.JB), floordiv(int(pc.tw) - 1 + pad, int(S)) + 1);
        // inputs [j0 - TM + 1, j0) carried between blocks
        float win[WIN];
        [[unroll]] for (uint e = 0u; e + 1u < TM; ++e) win[e] = act_in(LD_x(uint(int(xrow) + jstart - int(TM) + 1 + int(e))));
        [[dont_unroll]] for (int j0 = jstart; j0 < jend; j0 += int(P)) {
            [[unroll]] for (uint v = 0u; v < P4; ++v) {
                const vec4 xv = act_in4(LD_x4((uint(int(xrow) + j0) >> 2) + v));
                win[TM - 1u + 4u * v] = xv.x; win[TM + 4u * v] = xv.y;
                win[TM + 1u + 4u * v] = xv.z; win[TM + 2u + 4u * v] = xv.w;
            }
            const int i0 = int(S) * j0 - pad;              // first output of the block
            float o[SS * P];
            [[unroll]] for (uint p = 0u; p < P; ++p) {
                [[unroll]] for (uint ph = 0u; ph < S; ++ph) {
                    float a = b;
                    [[unroll]] for (uint t = 0u; t < TM; ++t) {
                        if (ph + S * t < KS) {
                            float prod = win[p + TM - 1u - t] * wt[ph + S * t];
                            if (EDGE_SELECT) prod = uint(j0 + int(p) - int(t)) < uint(lw) ? prod : 0.0;
                            a += prod;
                        }
                    }
                    o[p * S + ph] = act_apply(a, ab);
                }
            }
            if (live) {
                const bool inside = i0 >= 0 && i0 + int(S * P) <= int(pc.tw);
                if (inside) {
                    if (OV == 4u) {
                        [[unroll]] for (uint e = 0u; e < S * P; e += 4u)
                            outp4[(orow + uint(i0) + e) >> 2] = vec4(o[e], o[e + 1u], o[e + 2u], o[e + 3u]);
                    } else if (OV == 2u) {
                        [[unroll]] for (uint e = 0u; e < S * P; e += 2u)
                            outp2[(orow + uint(i0) + e) >> 1] = vec2(o[e], o[e + 1u]);
                    } else {
                        [[unroll]] for (uint e = 0u; e < S * P; ++e) outp[orow + uint(i0) + e] = o[e];
                    }
                } else {
                    [[unroll]] for (uint e = 0u; e < S * P; ++e) store1(orow, i0 + int(e), o[e]);
                }
            }
            [[unroll]] for (uint e = 0u; e + 1u < TM; ++e) win[e] = win[e + P];
        }
    } else {
        // ---------------------------------------------------------------- generic path
        const int ia = int(G.x * pc.JB);
        const int ib = min(ia + int(pc.JB), int(pc.tw));
        const int s = int(pc.s), d = int(pc.d), Dp = int(pc.Dp), Pq = int(pc.P);
        [[dont_unroll]] for (int i = ia; i < ib; ++i) {
            const int u = i + pad;
            const int ph = ((u % s) + s) % s;
            float a = b;
            if (ph % int(pc.gd) == 0) {
                const int q0 = int((uint(ph / int(pc.gd)) * pc.inv) % pc.P);
                if (q0 < int(pc.K)) {
                    const int T = (int(pc.K) - q0 + Pq - 1) / Pq;
                    const int m0 = floordiv(u - q0 * d, s);     // input of tap q0
                    const int t_lo = max(0, -floordiv(-(m0 - lw + 1), Dp));
                    const int t_hi = min(T, floordiv(m0, Dp) + 1);
                    [[dont_unroll]] for (int t = t_lo; t < t_hi; ++t)
                        a += act_in(LD_x(uint(int(xrow) + m0 - t * Dp))) * LD_w(cl * pc.KP + uint(q0 + t * Pq));
                }
            }
            if (live) outp[orow + uint(i)] = act_apply(a, ab);
        }
    }
}

VKCONVT_MAIN
