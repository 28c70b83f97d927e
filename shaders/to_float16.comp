#version 450
#extension GL_GOOGLE_include_directive : require
// kernel "to_float16": the result of a float16 call rounded once to float16 on the device, so that
// half the bytes come back and the host copies instead of converting. Each invocation rounds four
// consecutive floats of src and writes them as two 32-bit words of packed halves (no word is
// shared by two invocations); the tail past n is zero.
//     dst[i] = float16(src[i]) for i < n

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;

layout(std430, binding = 0) readonly buffer BufSrc { float src[]; };   // (n,)
layout(std430, binding = 0) readonly buffer BufSrc4 { vec4 src4[]; };
layout(std430, binding = 1) writeonly buffer BufDst { uvec2 dst[]; };  // (n,) as halves, in whole uvec2

layout(push_constant) uniform Push {
    uint n;
    uint grid_x; uint grid_y; uint grid_z;
} pc;

#include "common.glsl"

void group(uvec3 G) {
    const uint q = G.x * gl_WorkGroupSize.x + gl_LocalInvocationID.x;     // quad index
    const uint i = 4u * q;
    if (i >= pc.n) return;
    vec4 v = vec4(0.0);
    if (i + 3u < pc.n) {
        v = src4[q];                       // one vec4 load: one access per lane on llvmpipe
    } else {
        for (uint e = 0u; e < 4u; ++e)
            if (i + e < pc.n) v[e] = src[i + e];
    }
    dst[q] = pack4(v);
}

VKCONVT_MAIN
