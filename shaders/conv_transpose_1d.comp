#version 450
#extension GL_GOOGLE_include_directive : require
// op "conv_transpose_1d": the direct kernel, no workspace.
//     out[n, g*cocount + o, t] = bias + sum_{ci, k: t = l*stride - padding + k*dilation} x[n, g*Cig + ci, l] * w[g*Cig + ci, o, k]
// Phase split: outputs t with the same phase r = (t + padding) mod stride are reached by the same
// taps k (k*dilation = r mod stride), from consecutive inputs. An invocation computes TT outputs of
// one phase (t = (j0 + jj)*stride + r - padding) for TC output channels, visiting only the taps
// that land: its work is C_in·K·L_in per output channel, not C_in·K·L_out. Each loaded input feeds
// TC multiply-adds and each loaded weight TT.
// Chunking: x holds input positions [lb, lb + lw), out holds output positions [t0, t0 + tw).

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;
layout(constant_id = 1) const uint TC = 4;   // output channels per invocation
layout(constant_id = 2) const uint TT = 4;   // outputs (of one phase) per invocation

layout(std430, binding = 0) readonly buffer BufX { float x[]; };      // (nb, gcount*Cig, lw)
layout(std430, binding = 1) readonly buffer BufW { float w[]; };      // (gcount*Cig, cocount, K)
layout(std430, binding = 2) readonly buffer BufBias { float bias[]; };  // (C_out,) or (1,) unused
layout(std430, binding = 3) writeonly buffer BufOut { float outp[]; }; // (nb, gcount*cocount, tw)

layout(push_constant) uniform Push {
    uint cig; uint gcount; uint K; uint lw; uint lb;
    uint stride; uint padding; uint dilation; uint k_period;
    uint tw; uint t0; uint jmin; uint jblocks; uint cblocks;
    uint has_bias; uint g0; uint cocount; uint cog; uint co0;
    uint base_x; uint base_y; uint base_z;
} pc;

#include "common.glsl"

void main() {
    const uint gx = GLOBAL_X;                     // (phase r, j-block)
    if (gx >= pc.stride * pc.jblocks) return;
    const uint r = gx / pc.jblocks;
    const uint j0 = pc.jmin + (gx % pc.jblocks) * TT;
    const uint g = GROUP_Y / pc.cblocks;          // group inside the piece
    const uint o0 = (GROUP_Y % pc.cblocks) * TC;  // first output channel inside the group
    const uint n = GROUP_Z;

    float acc[TC][TT];
    for (uint i = 0; i < TC; ++i)
        for (uint jj = 0; jj < TT; ++jj) acc[i][jj] = 0.0;

    uint wrow[TC];
    for (uint i = 0; i < TC; ++i) wrow[i] = min(o0 + i, pc.cocount - 1) * pc.K;

    const int lw = int(pc.lw);
    // first tap of this phase: k*dilation = r (mod stride)
    uint k = 0;
    while (k < pc.k_period && k < pc.K && ((k * pc.dilation) % pc.stride) != r) ++k;
    if (k == pc.k_period) k = pc.K;               // no tap of this phase exists
    for (; k < pc.K; k += pc.k_period) {
        // taps of phase r read inputs l = j - m, m = (k*dilation - r) / stride
        const int lstart = int(j0) - int((k * pc.dilation - r) / pc.stride) - int(pc.lb);
        if (lstart >= lw) continue;
        if (lstart + int(TT) <= 0) break;         // later taps only reach earlier inputs
        for (uint ci = 0; ci < pc.cig; ++ci) {
            const uint xrow = ((n * pc.gcount + g) * pc.cig + ci) * pc.lw;
            float xv[TT];
            for (uint jj = 0; jj < TT; ++jj) {
                const int l = lstart + int(jj);
                xv[jj] = (l >= 0 && l < lw) ? x[xrow + uint(l)] : 0.0;
            }
            const uint wbase = (g * pc.cig + ci) * pc.cocount * pc.K + k;
            float wv[TC];
            for (uint i = 0; i < TC; ++i) wv[i] = w[wbase + wrow[i]];
            for (uint i = 0; i < TC; ++i)
                for (uint jj = 0; jj < TT; ++jj) acc[i][jj] = fma(wv[i], xv[jj], acc[i][jj]);
        }
    }

    for (uint i = 0; i < TC; ++i) {
        const uint o = o0 + i;
        if (o >= pc.cocount) break;
        const uint c = g * pc.cocount + o;
        const float bv = pc.has_bias != 0u ? bias[BIAS_CHANNEL(c)] : 0.0;
        const uint obase = (n * pc.gcount * pc.cocount + c) * pc.tw;
        for (uint jj = 0; jj < TT; ++jj) {
            const int t = int((j0 + jj) * pc.stride + r) - int(pc.padding);
            if (t >= int(pc.t0) && t < int(pc.t0 + pc.tw)) outp[obase + uint(t) - pc.t0] = acc[i][jj] + bv;
        }
    }
}
