#version 450
#extension GL_GOOGLE_include_directive : require
// kernel "im2col_1d": the column buffer of the gemm path of conv1d, on one piece-local problem
// (the same folding as conv1d.comp: m = t*s + k*d - pad, positions outside [0, lw) read 0):
//   transposed == 0:  col[n*G + g][ci*K + k][t]  = x[n, g*cpg + ci, xoff + t*s + k*d - pad]
//                     rows of ldcol elements: the B operand (cpg*K x tw) of matmul per (n, g):
//                     C[b] = W[b % G] (cog x cpg*K) . col[b] with b = n*G + g, b_batch_stride = cpg*K*ldcol
//   transposed == 1:  col[n*G + g][t][ci*K + k]  (rows of ldcol elements, tw rows per (n, g)): the
//                     layout of a matmul B operand whose rows are positions, e.g. the im2col of
//                     grad_out for grad_weight = x (cig x L) . colT (L x cog*K)
// for n < nb (grid z), g < G (grid y), ci < cpg, k < K, t < tw. Each invocation writes one pair of
// consecutive elements of a row; consecutive invocations write consecutive pairs. float32: any
// ldcol >= the row length. float16 twin: a pair is one 32-bit word of halves, so ldcol and the
// column base must be even; a row of odd length gets a 0 half after its last element.
// No input activation here: the matmul applies it to B as it loads (its in_act field).

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;

#ifdef VKCONVT_F16
layout(std430, binding = 0) readonly buffer BufX { uint x_h[]; };        // (nb, G*cpg, ldx)
#define LD_x(i) unpackHalf2x16(x_h[(i) >> 1])[(i) & 1u]
layout(std430, binding = 1) writeonly buffer BufCol { uint col_h[]; };   // (nb*G, cpg*K, ldcol) or (nb*G, tw, ldcol)
#else
layout(std430, binding = 0) readonly buffer BufX { float x[]; };        // (nb, G*cpg, ldx)
#define LD_x(i) x[i]
layout(std430, binding = 1) writeonly buffer BufCol { float col[]; };   // (nb*G, cpg*K, ldcol) or (nb*G, tw, ldcol)
#endif

layout(push_constant) uniform Push {
    uint G; uint cpg; uint K; uint lw; uint ldx; uint xoff; uint tw; uint ldcol;
    uint s; uint d; int pad; uint transposed;
    uint grid_x; uint grid_y; uint grid_z;
} pc;

#include "common.glsl"

float value(uint xrow, uint t, uint k) {
    const int m = int(t * pc.s + k * pc.d) - pc.pad;
    return (m >= 0 && m < int(pc.lw)) ? LD_x(xrow + uint(m)) : 0.0;
}

void group(uvec3 G) {
    const uint e = G.x * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    const bool tr = pc.transposed != 0u;
    const uint rows = tr ? pc.tw : pc.cpg * pc.K;
    const uint len = tr ? pc.cpg * pc.K : pc.tw;
    const uint pairs = (len + 1u) / 2u;
    if (e >= rows * pairs) return;
    const uint g = G.y;
    const uint n = G.z;
    const uint row = e / pairs;
    const uint c0 = 2u * (e % pairs);
    const uint xch = (n * pc.G + g) * pc.cpg;
    vec2 v = vec2(0.0);
    for (uint h = 0u; h < 2u; ++h) {
        const uint c = c0 + h;
        if (c >= len) break;
        const uint ck = tr ? c : row;              // ci*K + k
        const uint t = tr ? row : c;
        v[h] = value((xch + ck / pc.K) * pc.ldx + pc.xoff, t, ck % pc.K);
    }
    const uint o = ((n * pc.G + g) * rows + row) * pc.ldcol + c0;
#ifdef VKCONVT_F16
    col_h[o >> 1] = packHalf2x16(v);
#else
    col[o] = v.x;
    if (c0 + 1u < len) col[o + 1u] = v.y;
#endif
}

VKCONVT_MAIN
