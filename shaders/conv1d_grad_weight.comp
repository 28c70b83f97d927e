#version 450
#extension GL_GOOGLE_include_directive : require
// kernel "conv1d_grad_weight": the weight gradient of conv_transpose1d, direct (no workspace), on
// one piece-local problem:
//     gw[g*cig + ci, o, kb + q] (+)= sum over n < nb, m < lx of
//         act_in(x[n, g*cig + ci, xoff + m]) * go[n, g*cog + o, goff + m*s + q*d - pad]
//     for g < G, ci < cig, o < cog, q < K; grad_out positions j = m*s + q*d - pad outside [0, lg)
//     contribute nothing. accumulate == 0 writes gw, 1 adds to it (float32 either way).
// Here x is the transposed conv's input (N, C_in, L) and go its output gradient (N, C_out, L_out):
// the full gradient is gw[g*cig + ci, co, k] = sum_{n, l} x[n, g*cig+ci, l] * go[n, g*cog+co, l*s - p + k*d].
// Folding (vkconvt/kernels/conv1d.py: fold_conv1d with x positions in the role of conv1d's outputs):
// for an input chunk [l0, l0 + lx) the host keeps the grad_out window [lb, lb + lg) and the taps
// [kb, kb + K) that meet it, with pad = lb + p - l0*s - kb*d; xoff = l0 and goff = lb point into the
// whole tensors (no copies). The sum over the batch runs inside the kernel (a loop over n); the
// sum over length is the loop over m, and over chunks the accumulate flag: a chunked call writes
// its first chunk (covering every tap, or the host zero-fills gw) and adds the others, no workspace.
// A logical invocation owns TI input channels x TO output channels of one tap (grid z = tap) and
// walks only the positions m whose grad_out index is in range (computed, not searched).

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;
layout(constant_id = 1) const uint TI = 8;   // input channels (rows of gw) per invocation
layout(constant_id = 2) const uint TO = 8;   // output channels per invocation

#ifdef VKCONVT_F16
layout(std430, binding = 0) readonly buffer BufX { uint x_h[]; };        // (nb, G*cig, ldx)
#define LD_x(i) unpackHalf2x16(x_h[(i) >> 1])[(i) & 1u]
layout(std430, binding = 1) readonly buffer BufGo { uint go_h[]; };      // (nb, G*cog, ldg)
#define LD_go(i) unpackHalf2x16(go_h[(i) >> 1])[(i) & 1u]
#else
layout(std430, binding = 0) readonly buffer BufX { float x[]; };        // (nb, G*cig, ldx)
#define LD_x(i) x[i]
layout(std430, binding = 1) readonly buffer BufGo { float go[]; };      // (nb, G*cog, ldg)
#define LD_go(i) go[i]
#endif
layout(std430, binding = 2) buffer BufGw { float gw[]; };               // (G*cig, cog, ldk)

layout(push_constant) uniform Push {
    uint nb; uint G; uint cig; uint cog; uint K; uint lx; uint ldx; uint xoff; uint lg; uint ldg; uint goff;
    uint s; uint d; int pad; uint ldk; uint kb; uint accumulate; uint oblocks; uint iblocks;
    uint in_act; float in_slope;
    uint grid_x; uint grid_y; uint grid_z;
} pc;

#include "common.glsl"
#include "act_in.glsl"

void group(uvec3 G) {
    const uint ob = G.x * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (ob >= pc.oblocks) return;
    const uint o0 = ob * TO;
    const uint g = G.y / pc.iblocks;
    const uint i0 = (G.y % pc.iblocks) * TI;
    const uint q = G.z;
    const int s = int(pc.s);
    const int off = int(q * pc.d) - pc.pad;           // grad_out index of m is m*s + off
    const int m_lo = max(0, ceildiv(-off, s));
    const int m_hi = min(int(pc.lx) - 1, floordiv(int(pc.lg) - 1 - off, s));

    float acc[TI][TO];
    for (uint a = 0; a < TI; ++a)
        for (uint b = 0; b < TO; ++b) acc[a][b] = 0.0;

    uint xrow[TI];
    for (uint a = 0; a < TI; ++a) xrow[a] = (g * pc.cig + min(i0 + a, pc.cig - 1u)) * pc.ldx + pc.xoff;
    uint grow[TO];
    for (uint b = 0; b < TO; ++b) grow[b] = uint(int((g * pc.cog + min(o0 + b, pc.cog - 1u)) * pc.ldg + pc.goff) + off);
    const uint xstep = pc.G * pc.cig * pc.ldx;        // one batch entry further
    const uint gstep = pc.G * pc.cog * pc.ldg;
    for (uint n = 0; n < pc.nb; ++n) {
        for (int m = m_lo; m <= m_hi; ++m) {
            float xv[TI], gv[TO];
            for (uint a = 0; a < TI; ++a) xv[a] = act_in(LD_x(xrow[a] + uint(m)));
            for (uint b = 0; b < TO; ++b) gv[b] = LD_go(grow[b] + uint(m * s));
            for (uint a = 0; a < TI; ++a)
                for (uint b = 0; b < TO; ++b) acc[a][b] = fma(xv[a], gv[b], acc[a][b]);
        }
        for (uint a = 0; a < TI; ++a) xrow[a] += xstep;
        for (uint b = 0; b < TO; ++b) grow[b] += gstep;
    }

    for (uint a = 0; a < TI; ++a) {
        if (i0 + a >= pc.cig) break;
        for (uint b = 0; b < TO; ++b) {
            if (o0 + b >= pc.cog) break;
            const uint idx = ((g * pc.cig + i0 + a) * pc.cog + o0 + b) * pc.ldk + pc.kb + q;
            gw[idx] = pc.accumulate != 0u ? gw[idx] + acc[a][b] : acc[a][b];
        }
    }
}

VKCONVT_MAIN
