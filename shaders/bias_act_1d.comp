#version 450
#extension GL_GOOGLE_include_directive : require
// kernel "bias_act_1d": the epilogue of conv1d's gemm path. The matmul writes
// C[n*G + g] = W[g] . col[n*G + g], i.e. src[n, c, i] with c = g*cog + o, into rows of lds elements
// (lds a multiple of the matmul kernel's alignment: 4 for matmul_sg/_tiled); this kernel writes
//     out[n, c, ooff + i] = act(src[n, c, i] + bias[c])        for n < nb (grid z), c < C (grid y), i < tw
// into the output's own layout (rows of ldo, from ooff: an output chunk of a longer row), with the
// fused output activation (act_out.glsl). One output per invocation, consecutive along i. With
// slices > 1, src holds that many partial products slice_stride elements apart (a split-K matmul's
// slices of its reduction), summed in slice order.

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;

#ifdef VKCONVT_F16
layout(std430, binding = 0) readonly buffer BufSrc { uint src_h[]; };   // (slices, nb, C, lds) as halves (matmul_*_f16)
#define LD_src(i) unpackHalf2x16(src_h[(i) >> 1])[(i) & 1u]
#else
layout(std430, binding = 0) readonly buffer BufSrc { float src[]; };   // (slices, nb, C, lds)
#define LD_src(i) src[i]
#endif
layout(std430, binding = 1) readonly buffer BufBias { float bias[]; };  // (C,) or (1,) unused
layout(std430, binding = 2) writeonly buffer BufOut { float outp[]; };  // (nb, C, ldo)

layout(push_constant) uniform Push {
    uint C; uint tw; uint lds; uint ldo; uint ooff; uint has_bias; uint slices; uint slice_stride;
    uint act; float act_slope;
    uint grid_x; uint grid_y; uint grid_z;
} pc;

#include "common.glsl"
#include "act_out.glsl"

void group(uvec3 G) {
    const uint i = G.x * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (i >= pc.tw) return;
    const uint c = G.y;
    const uint n = G.z;
    const float b = pc.has_bias != 0u ? bias[c] : 0.0;
    const uint at = (n * pc.C + c) * pc.lds + i;
    float v = LD_src(at);
    for (uint sl = 1u; sl < pc.slices; ++sl) v += LD_src(at + sl * pc.slice_stride);
    outp[(n * pc.C + c) * pc.ldo + pc.ooff + i] = act_out(v + b, c, pc.C);
}

VKCONVT_MAIN
