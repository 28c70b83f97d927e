#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#extension GL_EXT_control_flow_attributes : require
// kernel "conv1d_sg": direct conv1d for dense and grouped layers, shaped for CPU Vulkan devices
// such as lavapipe (llvmpipe). It computes one piece-local problem (conv1d.comp's, same folding):
//     out[n, g*cog + o, ooff + i] = (has_bias ? bias[g*cog + o] : 0)
//         + sum over ci < cig, q < K of w[g*cog + o, ci, kb + q] * x[n, g*cig + ci, xoff + i*s + q*d - pad]
//     for n < nb, g < G, o < cog, i < tw; x positions m = i*s + q*d - pad outside [0, lw) read 0.
// Tiling: a workgroup owns J consecutive outputs [k0, k0 + J) and WG*TO output channels; for each
// tap q that reaches an input for one of them (the range is computed) and each input channel, the
// J inputs m = (k0 + j)*s + q*d - pad are loaded once, lane-distributed (lane l loads j = l, l+SG,
// ...: JR scalar loads per lane), and every lane gets all J by subgroupShuffle. Each lane owns TO
// output channels, read as vec4 from the repacked weights, so a loaded input feeds WG*TO
// multiply-adds and a loaded weight vec4 feeds 4*J. CI input channels per trip: each accumulator
// takes CI products per trip (llvmpipe stores loop-carried values with a masked blend once per trip).
//
// Bindings:
//   0 x    (nb, G*cig, ldx): x[n, c, m] at (n*G*cig + c)*ldx + xoff + m, m < lw; reads are clamped to
//          [0, lw) and zeroed in registers outside, so no margins.
//   1 w    [G][wk][ci_pad][o_pad] as vec4 (conv1d_shaped.sg_weights): float index
//          ((g*wk + k)*ci_pad + ci)*o_pad + o holds w[g*cog + o, ci, k]; zero for ci >= cig, o >= cog;
//          ci_pad = cig rounded up to CI, o_pad = cog rounded up to 4. A piece reads taps kb + q.
//   2 bias (G*cog,) (any 1-float buffer when has_bias == 0 and act != snake; snakes: 3*G*cog, act_out.glsl)
//   3 out  (nb, G*cog, ldo): out[n, c, ooff + i]
// Push (this order): G cig cog K kb wk lw ldx xoff tw ldo ooff s d pad has_bias ci_pad o_pad KB OB
//   act act_slope in_act in_slope grid_x grid_y grid_z; KB = ceil(tw / J), OB = ceil(cog / (WG*TO)).
// Grid: (KB, G*OB, nb): logical workgroup (kb, g*OB + ob, n).
// Spec constants: 0 WG (8) lanes per workgroup; 1 TO (8 or 4) output channels per lane, multiple of
//   4; 2 J (48) outputs per workgroup, a multiple of SG, <= 64 (J >= 80 crashes lavapipe 25.0.7's
//   compiler in the sibling kernel); 3 CI (2) input channels per trip; 4 SG (8) shuffle group:
//   correct for any subgroup size >= SG, with the shuffles in uniform control flow.
// Requirements: GL_KHR_shader_subgroup_basic + _shuffle; piece-local indices fit int32 (host folds).
// A weight times a zero-padding input is multiplied (0 * inf = NaN, as PyTorch's column buffer does).

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;
layout(constant_id = 1) const uint TO = 8;
layout(constant_id = 2) const uint J = 48;
layout(constant_id = 3) const uint CI = 2;
layout(constant_id = 4) const uint SG = 8;
const uint TO4 = TO / 4;
const uint JR = J / SG;

#ifdef VKCONVT_F16
layout(std430, binding = 0) readonly buffer BufX { uint x_h[]; };       // (nb, G*cig, ldx)
#define LD_x(i) unpackHalf2x16(x_h[(i) >> 1])[(i) & 1u]
#else
layout(std430, binding = 0) readonly buffer BufX { float x[]; };       // (nb, G*cig, ldx)
#define LD_x(i) x[i]
#endif
#ifdef VKCONVT_F16
layout(std430, binding = 1) readonly buffer BufW4 { uvec2 w4_h[]; };    // [G][wk][ci_pad][o_pad]
#define LD_w4(i) h4(w4_h[i])
#else
layout(std430, binding = 1) readonly buffer BufW4 { vec4 w4[]; };      // [G][wk][ci_pad][o_pad]
#define LD_w4(i) w4[i]
#endif
layout(std430, binding = 2) readonly buffer BufBias { float bias[]; }; // (G*cog,) or (1,) unused
layout(std430, binding = 3) writeonly buffer BufOut { float outp[]; }; // (nb, G*cog, ldo)

layout(push_constant) uniform Push {
    uint G; uint cig; uint cog; uint K; uint kb; uint wk; uint lw; uint ldx; uint xoff; uint tw; uint ldo; uint ooff;
    uint s; uint d; int pad; uint has_bias; uint ci_pad; uint o_pad; uint KB; uint OB;
    uint act; float act_slope; uint in_act; float in_slope;
    uint grid_x; uint grid_y; uint grid_z;
} pc;

#include "common.glsl"
#include "act_in.glsl"
#include "act_out.glsl"

void group(uvec3 G) {
    const uint WG = gl_WorkGroupSize.x;
    const uint lane = gl_LocalInvocationID.x;
    const uint sl = gl_SubgroupInvocationID % SG;
    const uint g = G.y / pc.OB;
    const uint o0 = (G.y % pc.OB) * (WG * TO);
    const uint n = G.z;
    const int k0 = int(G.x * J);
    if (k0 >= int(pc.tw)) return;
    const int kend = min(k0 + int(J), int(pc.tw));
    const int s = int(pc.s);
    const int d = int(pc.d);
    const int lw = int(pc.lw);
    // taps reaching an input for some output of [k0, kend)
    const int q_lo = max(0, ceildiv(pc.pad - (kend - 1) * s, d));
    const int q_hi = min(int(pc.K) - 1, floordiv(lw - 1 + pc.pad - k0 * s, d));

    vec4 acc[J][TO4];
    [[unroll]] for (uint k = 0u; k < J; ++k)
        [[unroll]] for (uint v = 0u; v < TO4; ++v) acc[k][v] = vec4(0.0);

    const uint xchan0 = (n * pc.G + g) * pc.cig;
    const uint o_pad4 = pc.o_pad / 4u;
    uint wcol[TO4];
    [[unroll]] for (uint v = 0u; v < TO4; ++v) wcol[v] = min(o0 / 4u + lane + WG * v, o_pad4 - 1u);

    [[dont_unroll]] for (int q = q_lo; q <= q_hi; ++q) {
        const int mbase = k0 * s + q * d - pc.pad;          // input of output k0
        uint xi[JR];
        bool xv[JR];
        [[unroll]] for (uint r = 0u; r < JR; ++r) {
            const int m = mbase + int(sl + SG * r) * s;
            xv[r] = m >= 0 && m < lw;
            xi[r] = uint(clamp(m, 0, lw - 1)) + pc.xoff;
        }
        uint wrow = ((g * pc.wk + pc.kb + uint(q)) * pc.ci_pad) * o_pad4;
        [[dont_unroll]] for (uint ci = 0u; ci < pc.cig; ci += CI) {
            float xr[CI][JR];
            [[unroll]] for (uint c = 0u; c < CI; ++c) {
                const bool cok = ci + c < pc.cig;
                const uint xrow = (xchan0 + min(ci + c, pc.cig - 1u)) * pc.ldx;
                [[unroll]] for (uint r = 0u; r < JR; ++r) {
                    const float v = act_in(LD_x(xrow + xi[r]));
                    xr[c][r] = mix(0.0, v, xv[r] && cok);
                }
            }
            vec4 wv[CI][TO4];
            [[unroll]] for (uint c = 0u; c < CI; ++c)
                [[unroll]] for (uint v = 0u; v < TO4; ++v) wv[c][v] = LD_w4(wrow + c * o_pad4 + wcol[v]);
            // channel groups outer, outputs inner: only CI vec4 of weights are live at a time
            [[unroll]] for (uint v = 0u; v < TO4; ++v) {
                [[unroll]] for (uint k = 0u; k < J; ++k) {
                    vec4 p = subgroupShuffle(xr[0][k / SG], k % SG) * wv[0][v];
                    [[unroll]] for (uint c = 1u; c < CI; ++c) p += subgroupShuffle(xr[c][k / SG], k % SG) * wv[c][v];
                    acc[k][v] += p;
                }
            }
            wrow += CI * o_pad4;
        }
    }

    const uint obase = (n * pc.G + g) * pc.cog;
    [[unroll]] for (uint v = 0u; v < TO4; ++v) {
        [[unroll]] for (uint c = 0u; c < 4u; ++c) {
            const uint o = o0 + 4u * (lane + WG * v) + c;
            if (o >= pc.cog) continue;
            const float b = pc.has_bias != 0u ? bias[g * pc.cog + o] : 0.0;
            const vec2 ab = act_coef(g * pc.cog + o, pc.G * pc.cog);
            const uint ofirst = (obase + o) * pc.ldo + pc.ooff + uint(k0);
            // a whole block with no activation stores without a branch per output
            if (k0 + int(J) <= kend && pc.act == 0u) {
                [[unroll]] for (uint k = 0u; k < J; ++k) outp[ofirst + k] = acc[k][v][c] + b;
            } else {
                [[unroll]] for (uint k = 0u; k < J; ++k) {
                    if (k0 + int(k) >= kend) break;
                    outp[ofirst + k] = act_apply(acc[k][v][c] + b, ab);
                }
            }
        }
    }
}

VKCONVT_MAIN
