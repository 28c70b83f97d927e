#version 450
#extension GL_GOOGLE_include_directive : require
// kernel "col2im_1d": the gather form of col2im for a transposed convolution, on one piece-local
// problem (vkconvt/schedule.py folds the large offsets on the host). Each invocation owns one output
// element out[n, c, i] and sums the column entries that land on it (no atomics):
//     out[n, c, i] (+)= sum over q < K, m < lc with i + pad == m*s + q*d of col[n, c, q, m]
// for i in [i_begin, i_begin + i_count); column rows are ldcol floats apart (the matmul kernel's
// aligned leading dimension). Only the taps of the output's phase that land on one of
// the lc columns are visited (their range is computed). Outputs i >= fresh_from are written
// (bias + sum); outputs i < fresh_from already hold an earlier column chunk's sum and are added to:
// the accumulate mode of the chunked gemm path. With slices > 1 the column buffer holds that many
// partial column buffers, slice_stride floats apart (a split-K matmul's slices of its reduction):
// each entry is their sum, taken in slice order (deterministic, no atomics).

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;

#ifdef VKCONVT_F16
layout(std430, binding = 0) readonly buffer BufCol { uint col_h[]; };    // (slices, nb, C, K, ldcol), lc used
#define LD_col(i) unpackHalf2x16(col_h[(i) >> 1])[(i) & 1u]
#else
layout(std430, binding = 0) readonly buffer BufCol { float col[]; };    // (slices, nb, C, K, ldcol), lc used
#define LD_col(i) col[i]
#endif
layout(std430, binding = 1) readonly buffer BufBias { float bias[]; };  // (C,) or (1,) unused
layout(std430, binding = 2) buffer BufOut { float outp[]; };            // (nb, C, tw)

layout(push_constant) uniform Push {
    uint C; uint K; uint lc; uint ldcol; uint tw; uint i_begin; uint i_count; uint fresh_from; uint has_bias;
    uint slices; uint slice_stride;
    uint s; uint d; int pad; uint kp; uint gdiv; uint dinv;
    uint act; float act_slope;
    uint grid_x; uint grid_y; uint grid_z;
} pc;

#include "common.glsl"
#include "phase.glsl"
#include "act_out.glsl"

void group(uvec3 G) {
    const uint li = G.x * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (li >= pc.i_count) return;
    const uint i = pc.i_begin + li;
    const uint c = G.y;
    const uint n = G.z;
    const int u = int(i) + pc.pad;                // = m*s + q*d
    const int r = posmod(u, int(pc.s));
    const int J = (u - r) / int(pc.s);

    float acc = 0.0;
    uint q_r; int c_r, nu;
    if (phase_taps(r, pc.K, q_r, c_r, nu)) {
        const int P = int(pc.d / pc.gdiv);
        // tap q_r + v*kp reads column m = J - c_r - v*P, which must lie in [0, lc)
        const int v_lo = max(0, ceildiv(J - c_r - int(pc.lc) + 1, P));
        const int v_hi = min(nu - 1, floordiv(J - c_r, P));
        const uint row = (n * pc.C + c) * pc.K;
        for (int v = v_lo; v <= v_hi; ++v) {
            const uint q = q_r + uint(v) * pc.kp;
            const uint at = (row + q) * pc.ldcol + uint(J - c_r - v * P);
            for (uint sl = 0u; sl < pc.slices; ++sl) acc += LD_col(at + sl * pc.slice_stride);
        }
    }

    const uint idx = (n * pc.C + c) * pc.tw + i;
    if (i >= pc.fresh_from) {
        outp[idx] = act_out(acc + (pc.has_bias != 0u ? bias[c] : 0.0), c, pc.C);
    } else {
        outp[idx] += acc;
    }
}

VKCONVT_MAIN
