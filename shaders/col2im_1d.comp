#version 450
#extension GL_GOOGLE_include_directive : require
// op "col2im_1d": the gather form of col2im for a 1-D transposed convolution. Each invocation owns
// one output element out[n, c, t] and sums the column entries that land on it (no atomics):
//     out[n, c, t] (+)= sum over taps k with t = l*stride - padding + k*dilation of col[n, c, k, l]
// Only the taps that can land are visited: k steps by k_period = stride / gcd(stride, dilation).
// Chunking: col holds input positions [lbase, lbase + lc) only; out holds output positions
// [t0, t0 + tw) of the whole output. Outputs t >= fresh_from are written (bias + sum), outputs
// t < fresh_from are accumulated (+= sum): that is the accumulate mode the chunked gemm path uses.

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;

layout(std430, binding = 0) readonly buffer BufCol { float col[]; };  // (nb, C, K, lc)
layout(std430, binding = 1) readonly buffer BufBias { float bias[]; };  // (C_out,) of the whole layer, or (1,) unused
layout(std430, binding = 2) buffer BufOut { float outp[]; };         // (nb, C, tw)

layout(push_constant) uniform Push {
    uint C; uint K; uint lc; uint lbase;
    uint stride; uint padding; uint dilation; uint k_period;
    uint tw; uint t0; uint t_begin; uint t_count; uint fresh_from;
    uint has_bias; uint g0; uint cocount; uint cog; uint co0;
    uint base_x; uint base_y; uint base_z;
} pc;

#include "common.glsl"

void main() {
    const uint i = GLOBAL_X;
    const uint c = GROUP_Y;
    const uint n = GROUP_Z;
    if (i >= pc.t_count) return;
    const uint t = pc.t_begin + i;
    const int u = int(t + pc.padding);            // = l*stride + k*dilation
    const int s = int(pc.stride), d = int(pc.dilation);
    const int lo = int(pc.lbase), hi = int(pc.lbase + pc.lc);

    // first tap whose contribution lands on t: (u - k*d) divisible by s
    int k = 0;
    for (; k < int(pc.k_period) && k < int(pc.K); ++k) {
        if (u - k * d < 0) { k = int(pc.K); break; }
        if ((u - k * d) % s == 0) break;
    }
    if (k == int(pc.k_period)) k = int(pc.K);      // no tap of this phase exists

    float acc = 0.0;
    const uint row = (n * pc.C + c) * pc.K;
    for (; k < int(pc.K); k += int(pc.k_period)) {
        const int v = u - k * d;
        if (v < 0) break;                          // later taps reach even earlier inputs
        const int l = v / s;
        if (l < lo) break;
        if (l < hi) acc += col[(row + uint(k)) * pc.lc + uint(l - lo)];
    }

    const uint idx = (n * pc.C + c) * pc.tw + (t - pc.t0);
    if (t >= pc.fresh_from) {
        outp[idx] = acc + (pc.has_bias != 0u ? bias[BIAS_CHANNEL(c)] : 0.0);
    } else {
        outp[idx] += acc;
    }
}
