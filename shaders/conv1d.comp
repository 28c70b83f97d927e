#version 450
#extension GL_GOOGLE_include_directive : require
// kernel "conv1d": the portable direct kernel (no workspace, no subgroup ops, no shared memory), on
// one piece-local problem:
//     out[n, g*cog + o, ooff + i] = bias[g*cog + o]
//         + sum over ci < cig, q < K of w[g*cog + o, ci, kb + q] * x[n, g*cig + ci, xoff + i*s + q*d - pad]
//     for n < nb (grid z), g < G, o < cog, i < tw; x positions m = i*s + q*d - pad outside [0, lw)
//     read 0 (PyTorch's zero padding). Every output in [0, tw) is written.
// Folding (vkconvt/kernels/conv1d.py: fold_conv1d): for an output window [t0, t0 + tw) of the
// problem out[t] = sum_k w[k] x[t*stride - padding + k*dilation], the host keeps only the inputs
// [lb, lb + lw) and taps [kb, kb + K) that can meet, so m = (t - t0)*s + (k - kb)*d - pad with
// pad = lb + padding - t0*stride - kb*dilation (exact in Python integers, >= 0), s = stride unless
// the window has one output (then 1), d = dilation unless one tap is left (then 1). Every index
// below then fits 32 bits: huge paddings, strides and dilations never reach the shader. The weight
// is the layer's whole (G*cog, cig, wk) in PyTorch's layout, packed once: a piece reads its taps
// from kb on. xoff/ldx and ooff/ldo place the window in whole tensors (no copies).
// A logical invocation computes TT consecutive outputs for TC output channels and visits only the
// taps that reach an input for one of them (their range is computed, not searched).
// A weight times a zero-padding input is multiplied (0 * inf = NaN, as PyTorch's column buffer does).

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;
layout(constant_id = 1) const uint TC = 8;   // output channels per invocation
layout(constant_id = 2) const uint TT = 8;   // consecutive outputs per invocation

#ifdef VKCONVT_F16
layout(std430, binding = 0) readonly buffer BufX { uint x_h[]; };        // (nb, G*cig, ldx)
#define LD_x(i) unpackHalf2x16(x_h[(i) >> 1])[(i) & 1u]
#else
layout(std430, binding = 0) readonly buffer BufX { float x[]; };        // (nb, G*cig, ldx)
#define LD_x(i) x[i]
#endif
#ifdef VKCONVT_F16
layout(std430, binding = 1) readonly buffer BufW { uint w_h[]; };        // (G*cog, cig, wk)
#define LD_w(i) unpackHalf2x16(w_h[(i) >> 1])[(i) & 1u]
#else
layout(std430, binding = 1) readonly buffer BufW { float w[]; };        // (G*cog, cig, wk)
#define LD_w(i) w[i]
#endif
layout(std430, binding = 2) readonly buffer BufBias { float bias[]; };  // (G*cog,) or (1,) unused
layout(std430, binding = 3) writeonly buffer BufOut { float outp[]; };  // (nb, G*cog, ldo)

layout(push_constant) uniform Push {
    uint G; uint cig; uint cog; uint K; uint kb; uint wk; uint lw; uint ldx; uint xoff; uint tw; uint ldo; uint ooff;
    uint s; uint d; int pad; uint has_bias; uint tblocks; uint cblocks;
    uint act; float act_slope; uint in_act; float in_slope;
    uint grid_x; uint grid_y; uint grid_z;
} pc;

#include "common.glsl"
#include "act_in.glsl"
#include "act_out.glsl"

void group(uvec3 G) {
    const uint tb = G.x * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (tb >= pc.tblocks) return;
    const uint g = G.y / pc.cblocks;
    const uint o0 = (G.y % pc.cblocks) * TC;
    const uint n = G.z;
    const uint i0 = tb * TT;
    const int s = int(pc.s);
    const int d = int(pc.d);
    const int lw = int(pc.lw);
    const int ilast = int(min(i0 + TT, pc.tw)) - 1;
    // taps q with m = i*s + q*d - pad in [0, lw) for some i in [i0, ilast]
    const int q_lo = max(0, ceildiv(pc.pad - ilast * s, d));
    const int q_hi = min(int(pc.K) - 1, floordiv(lw - 1 + pc.pad - int(i0) * s, d));

    float acc[TC][TT];
    for (uint c = 0; c < TC; ++c)
        for (uint j = 0; j < TT; ++j) acc[c][j] = 0.0;

    uint wrow[TC];
    for (uint c = 0; c < TC; ++c) wrow[c] = (g * pc.cog + min(o0 + c, pc.cog - 1u)) * pc.cig * pc.wk + pc.kb;
    const uint xrow0 = (n * pc.G + g) * pc.cig;
    for (int q = q_lo; q <= q_hi; ++q) {
        const int m0 = int(i0) * s + q * d - pc.pad;
        bool live[TT];
        uint mi[TT];
        for (uint j = 0; j < TT; ++j) {
            const int m = m0 + int(j) * s;
            live[j] = m >= 0 && m < lw;
            mi[j] = uint(clamp(m, 0, lw - 1)) + pc.xoff;
        }
        for (uint ci = 0; ci < pc.cig; ++ci) {
            const uint xrow = (xrow0 + ci) * pc.ldx;
            float xv[TT];
            for (uint j = 0; j < TT; ++j) xv[j] = live[j] ? act_in(LD_x(xrow + mi[j])) : 0.0;
            const uint wi = ci * pc.wk + uint(q);
            float wv[TC];
            for (uint c = 0; c < TC; ++c) wv[c] = LD_w(wrow[c] + wi);
            for (uint c = 0; c < TC; ++c)
                for (uint j = 0; j < TT; ++j) acc[c][j] = fma(wv[c], xv[j], acc[c][j]);
        }
    }

    for (uint c = 0; c < TC; ++c) {
        const uint o = o0 + c;
        if (o >= pc.cog) break;
        const uint ch = g * pc.cog + o;
        const float bv = pc.has_bias != 0u ? bias[ch] : 0.0;
        const vec2 ab = act_coef(ch, pc.G * pc.cog);
        const uint obase = (n * pc.G * pc.cog + ch) * pc.ldo + pc.ooff + i0;
        for (uint j = 0; j < TT; ++j) {
            if (i0 + j >= pc.tw) break;
            outp[obase + j] = act_apply(acc[c][j] + bv, ab);
        }
    }
}

VKCONVT_MAIN
