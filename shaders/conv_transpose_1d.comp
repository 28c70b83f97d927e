#version 450
#extension GL_GOOGLE_include_directive : require
// kernel "conv_transpose_1d": the portable direct kernel (no workspace), on one piece-local problem
//     out[n, g*cog + o, i] = bias[g*cog + o] + sum over ci < cig, m < lw, q < K with i + pad == m*s + q*d
//                            of x[n, g*cig + ci, m] * w[g*cig + ci, o, q]
// (vkconvt/schedule.py folds every large offset on the host; all indices here fit 32 bits).
// Phase split: outputs with the same phase r = (i + pad) mod s are reached by the same taps, from
// consecutive inputs. A logical invocation computes TT outputs of one phase, i = i0 + j*s, for TC
// output channels; i0 < min(s, tw) is the phase's first output, so an output window narrower than
// the stride costs no idle phases. Only the taps that land on an input are visited (their range is
// computed, not searched), and a tap is never multiplied by a position that is not an input.

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;
layout(constant_id = 1) const uint TC = 4;   // output channels per invocation
layout(constant_id = 2) const uint TT = 4;   // outputs (of one phase) per invocation

#ifdef VKCONVT_F16
layout(std430, binding = 0) readonly buffer BufX { uint x_h[]; };        // (nb, G*cig, lw)
#define LD_x(i) unpackHalf2x16(x_h[(i) >> 1])[(i) & 1u]
#else
layout(std430, binding = 0) readonly buffer BufX { float x[]; };        // (nb, G*cig, lw)
#define LD_x(i) x[i]
#endif
#ifdef VKCONVT_F16
layout(std430, binding = 1) readonly buffer BufW { uint w_h[]; };        // (G*cig, cog, K)
#define LD_w(i) unpackHalf2x16(w_h[(i) >> 1])[(i) & 1u]
#else
layout(std430, binding = 1) readonly buffer BufW { float w[]; };        // (G*cig, cog, K)
#define LD_w(i) w[i]
#endif
layout(std430, binding = 2) readonly buffer BufBias { float bias[]; };  // (G*cog,) or (1,) unused
layout(std430, binding = 3) writeonly buffer BufOut { float outp[]; };  // (nb, G*cog, tw)

layout(push_constant) uniform Push {
    uint cig; uint K; uint lw; uint tw;
    uint s; uint d; int pad; uint kp; uint gdiv; uint dinv;
    uint nrep; uint jblocks; uint cblocks; uint cog; uint has_bias;
    uint act; float act_slope; uint in_act; float in_slope;
    uint grid_x; uint grid_y; uint grid_z;
} pc;

#include "common.glsl"
#include "phase.glsl"
#include "act_in.glsl"
#include "act_out.glsl"

void group(uvec3 G) {
    const uint gx = G.x * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (gx >= pc.nrep * pc.jblocks) return;
    const uint i0 = gx / pc.jblocks;               // first output of this phase
    const uint jb = gx % pc.jblocks;
    const uint ngroups = pc.grid_y / pc.cblocks;
    const uint g = G.y / pc.cblocks;
    const uint o0 = (G.y % pc.cblocks) * TC;
    const uint n = G.z;
    const uint cnt = (pc.tw - 1u - i0) / pc.s + 1u;  // outputs i0 + j*s < tw
    if (jb * TT >= cnt) return;
    const int r = posmod(int(i0) + pc.pad, int(pc.s));
    const int J = (int(i0) + pc.pad - r) / int(pc.s) + int(jb * TT);

    float acc[TC][TT];
    for (uint i = 0; i < TC; ++i)
        for (uint jj = 0; jj < TT; ++jj) acc[i][jj] = 0.0;

    uint q_r; int c_r, nu;
    if (phase_taps(r, pc.K, q_r, c_r, nu)) {
        const int P = int(pc.d / pc.gdiv);
        const int lw = int(pc.lw);
        // tap u reads input m = J + jj - c_r - u*P: keep the taps where some jj lands in [0, lw)
        const int u_lo = max(0, ceildiv(J - c_r - lw + 1, P));
        const int u_hi = min(nu - 1, floordiv(J + int(TT) - 1 - c_r, P));
        uint wrow[TC];
        for (uint i = 0; i < TC; ++i) wrow[i] = min(o0 + i, pc.cog - 1u) * pc.K;
        for (int u = u_lo; u <= u_hi; ++u) {
            const uint q = q_r + uint(u) * pc.kp;
            const int m0 = J - c_r - u * P;
            for (uint ci = 0; ci < pc.cig; ++ci) {
                const uint xrow = ((n * ngroups + g) * pc.cig + ci) * pc.lw;
                float xv[TT];
                bool live[TT];
                for (uint jj = 0; jj < TT; ++jj) {
                    const int m = m0 + int(jj);
                    live[jj] = m >= 0 && m < lw;
                    xv[jj] = live[jj] ? act_in(LD_x(xrow + uint(m))) : 0.0;
                }
                const uint wbase = (g * pc.cig + ci) * pc.cog * pc.K + q;
                float wv[TC];
                for (uint i = 0; i < TC; ++i) wv[i] = LD_w(wbase + wrow[i]);
                for (uint i = 0; i < TC; ++i)
                    for (uint jj = 0; jj < TT; ++jj)
                        acc[i][jj] += live[jj] ? wv[i] * xv[jj] : 0.0;
            }
        }
    }

    for (uint i = 0; i < TC; ++i) {
        const uint o = o0 + i;
        if (o >= pc.cog) break;
        const uint c = g * pc.cog + o;
        const float bv = pc.has_bias != 0u ? bias[c] : 0.0;
        const uint obase = (n * ngroups * pc.cog + c) * pc.tw + i0;
        for (uint jj = 0; jj < TT; ++jj) {
            const uint j = jb * TT + jj;
            if (j < cnt) outp[obase + j * pc.s] = act_out(acc[i][jj] + bv, c, ngroups * pc.cog);
        }
    }
}

VKCONVT_MAIN
