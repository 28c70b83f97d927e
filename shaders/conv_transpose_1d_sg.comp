#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#extension GL_EXT_control_flow_attributes : require
// kernel "conv_transpose_1d", direct kernel for dense (and grouped) layers, subgroup variant for CPU
// Vulkan devices such as lavapipe. It computes one piece-local problem:
//   out[n, g*cog + o, i] = (has_bias ? bias[g*cog + o] : 0)
//       + sum over ci < cig, m < lw, q < K with i + pad == m*s + q*d of x[n, g*cig + ci, m] * w[g*cig + ci, o, q]
//   for n < nb, g < G, o < cog, i < tw        (pad signed; s, d >= 1; every output is written)
// Math (phase split): with gd = gcd(s, d), P = s/gd, Dp = d/gd, the outputs i with
// (i + pad) mod s == ph are reached only by the taps q = q0 + t*P (t < T), q0 = (ph/gd)*inv mod P
// (no tap when gd does not divide ph), from the inputs m = mb + k - t*Dp, where i = i0 + s*k is the
// k-th output of the phase. For one phase and one tap that is a product (output channels x input
// channels) . (input channels x shifted input positions), tiled like a matmul: a workgroup owns J
// consecutive outputs k of one phase and WG*TO output channels, and loops over the taps that land
// on its block (their range is computed: time is proportional to the real products) and over the
// input channels.
//
// Bindings:
//   0 x    float (nb, G*cig, ldx): input m of channel c at c*ldx + xoff + m. Any xoff >= 0 and ldx:
//          reads are clamped to [0, lw) and positions outside are zeroed in registers, so no margins
//          (host.conv_x_layout returns xoff = 0, ldx = lw).
//   1 w    the repacked weights as vec4 (host.conv_repack_weights): float index
//          ((g*K + q)*ci_pad + ci)*o_pad + o holds w[g*cig + ci, o, q]; zero for ci >= cig, o >= cog;
//          ci_pad = cig rounded up to max(CI, CIP), o_pad = cog rounded up to 4.
//   2 bias float (G*cog,) (any 1-float buffer when has_bias == 0)
//   3 out  float (nb, G*cog, tw) contiguous
// Push block (uint; pad is a signed int in two's complement), in this order (host.CONV_PUSH):
//   cig cog G K s d pad lw tw xoff ldx has_bias gd P Dp inv ci_pad o_pad KB OB grid_x grid_y grid_z
//   gd = gcd(s, d), P = s/gd, Dp = d/gd, inv = Dp^-1 mod P (0 when P == 1),
//   KB = ceil(ceil(tw/s) / J) output blocks per phase, OB = ceil(cog / (WG*TO)) channel blocks,
//   grid_x/y/z: the logical grid, walked grid-stride (common.glsl).
// Grid: (s*KB, G*OB, nb): workgroup (ph*KB + kb, g*OB + ob, n) computes the outputs k in
//   [kb*J, kb*J + J) of phase ph for channels [ob*WG*TO, ob*WG*TO + WG*TO) of group g.
// Spec constants (host.CONV_SPEC; lavapipe choice per layer: host.conv_choose_spec):
//   0 WG (8) lanes per workgroup; 1 TO (8 or 4) output channels per lane, multiple of 4;
//   2 J (48, 32 or 64) outputs per workgroup, multiple of SG, <= 64 (J = 80/96 crash lavapipe 25.0.7's
//   shader compiler); 3 CI (1) input channels per trip of the single-tap loop; 4 SG (8) window
//   group; 5 EDGE_SELECT (0; 1 when any weight is inf/NaN: products of taps that miss the input are
//   discarded with a select instead of multiplying the zeroed input, so 0 * inf never appears;
//   disables pairing); 6 PAIR (1) pair taps t, t+1 when Dp == 1; 7 CIP (2) input channels per
//   trip of the paired loop.
// Requirements: GL_KHR_shader_subgroup_basic + _shuffle: subgroupShuffle with a lane index that is a
//   constant after unrolling, in uniform control flow; correct for any subgroup size >= SG (set
//   SG <= the device's minSubgroupSize: 8 on lavapipe, 4 works too). Piece-local indices fit in
//   int32 (the host folds large offsets); s < 65536.
// Why it is fast on llvmpipe: loads, not FMAs, are the cost there (a storage-buffer load is a
// per-lane loop with a bounds check per component: ~37 instructions per lane for a vec4, ~14 for a
// float, against 2 for a multiply-add). Each lane owns TO output channels and reads their weights
// as vec4; the J outputs of a block share their inputs: lane l reads inputs l, l+SG, ... of the
// window (one scalar load per SG outputs) and a shuffle (one vpermd) gives each value to all lanes.
// When Dp == 1 a pair of taps reads one window of J+1 inputs (tap t at window position k+1, tap
// t+1 at k), so every loaded input feeds 2*WG*TO multiply-adds and every loaded weight J. Each
// accumulator takes 2*CIP products per trip, because llvmpipe stores loop-carried values with a
// masked blend once per trip. The loops over taps and channels are real loops; their bodies are
// unrolled (<= 1536 multiply-adds: compile time grows faster than linearly with the body).

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;
layout(constant_id = 1) const uint TO = 8;
layout(constant_id = 2) const uint J = 48;
layout(constant_id = 3) const uint CI = 1;
layout(constant_id = 4) const uint SG = 8;
layout(constant_id = 5) const bool EDGE_SELECT = false;
layout(constant_id = 6) const bool PAIR = true;     // pair taps when Dp == 1
layout(constant_id = 7) const uint CIP = 2;         // input channels per trip of the paired loop
const uint TO4 = TO / 4;
const uint JR = J / SG;
const uint JW = (J + SG) / SG;                      // window registers of a tap pair (J+1 inputs)

#ifdef VKCONVT_F16
layout(std430, binding = 0) readonly buffer BufX { uint x_h[]; };       // (nb, G*cig, ldx)
#define LD_x(i) unpackHalf2x16(x_h[(i) >> 1])[(i) & 1u]
#else
layout(std430, binding = 0) readonly buffer BufX { float x[]; };       // (nb, G*cig, ldx)
#define LD_x(i) x[i]
#endif
#ifdef VKCONVT_F16
layout(std430, binding = 1) readonly buffer BufW4 { uvec2 w4_h[]; };      // [G][K][ci_pad][o_pad]
#define LD_w4(i) h4(w4_h[i])
#else
layout(std430, binding = 1) readonly buffer BufW4 { vec4 w4[]; };      // [G][K][ci_pad][o_pad]
#define LD_w4(i) w4[i]
#endif
layout(std430, binding = 2) readonly buffer BufBias { float bias[]; }; // (G*cog,) or (1,) unused
layout(std430, binding = 3) writeonly buffer BufOut { float outp[]; }; // (nb, G*cog, tw)

layout(push_constant) uniform Push {
    uint cig; uint cog; uint G; uint K; uint s; uint d; int pad; uint lw; uint tw;
    uint xoff; uint ldx; uint has_bias; uint gd; uint P; uint Dp; uint inv; uint ci_pad; uint o_pad;
    uint KB; uint OB; uint act; float act_slope; uint in_act; float in_slope;
    uint grid_x; uint grid_y; uint grid_z;
} pc;

#include "common.glsl"
#include "act_in.glsl"
#include "act_out.glsl"



void group(uvec3 G) {
    const uint WG = gl_WorkGroupSize.x;
    const uint lane = gl_LocalInvocationID.x;
    const uint sl = gl_SubgroupInvocationID % SG;
    const uint ph = G.x / pc.KB;
    const uint kb = G.x % pc.KB;
    const uint g = G.y / pc.OB;
    const uint o0 = (G.y % pc.OB) * (WG * TO);
    const uint n = G.z;

    const int s = int(pc.s);
    const int pad = int(pc.pad);
    const int lw = int(pc.lw);
    // outputs of phase ph: i = i0 + s*k, k < nph
    const int i0 = ((int(ph) - pad) % s + s) % s;
    if (i0 >= int(pc.tw)) return;
    const int nph = (int(pc.tw) - i0 + s - 1) / s;
    const int k0 = int(kb * J);
    if (k0 >= nph) return;
    const int kend = min(k0 + int(J), nph);

    // taps of the phase: q = q0 + t*P, t < T; input m = mb + k - t*Dp
    int T = 0, q0 = 0, mb = 0;
    if (ph % pc.gd == 0u) {
        q0 = int(((ph / pc.gd) * pc.inv) % pc.P);
        if (q0 < int(pc.K)) {
            T = (int(pc.K) - q0 + int(pc.P) - 1) / int(pc.P);
            mb = (i0 + pad - int(ph)) / s - (q0 * int(pc.d) - int(ph)) / s;
        }
    }
    const int Dp = int(pc.Dp);
    // taps landing on at least one input for the block's outputs [k0, kend)
    const int t_lo = max(0, -floordiv(-(mb + k0 - lw + 1), Dp));
    const int t_hi = min(T, floordiv(mb + kend - 1, Dp) + 1);

    vec4 acc[J][TO4];
    [[unroll]] for (uint k = 0u; k < J; ++k)
        [[unroll]] for (uint v = 0u; v < TO4; ++v) acc[k][v] = vec4(0.0);

    const uint xchan0 = (n * pc.G + g) * pc.cig;
    const uint o_pad4 = pc.o_pad / 4u;
    uint wcol[TO4];
    [[unroll]] for (uint v = 0u; v < TO4; ++v) wcol[v] = min(o0 / 4u + lane + WG * v, o_pad4 - 1u);

    int t = t_lo;
    // Pairs of taps (t, t+1) share one window of J+1 inputs when Dp == 1: tap t reads window
    // position k+1, tap t+1 position k (each loaded input feeds both taps).
    if (PAIR && !EDGE_SELECT && Dp == 1) {
        [[dont_unroll]] for (; t + 1 < t_hi; t += 2) {
            const int q = q0 + t * int(pc.P);
            const int mbase = mb + k0 - t - 1;           // input of output k0 for tap t+1
            uint xi[JW];
            bool xv[JW];
            [[unroll]] for (uint r = 0u; r < JW; ++r) {
                const int m = mbase + int(sl + SG * r);
                xv[r] = m >= 0 && m < lw;
                xi[r] = uint(clamp(m, 0, lw - 1)) + pc.xoff;
            }
            uint wrowA = (uint(int(g) * int(pc.K) + q) * pc.ci_pad) * o_pad4;
            uint wrowB = wrowA + pc.P * pc.ci_pad * o_pad4;
            [[dont_unroll]] for (uint ci = 0u; ci < pc.cig; ci += CIP) {
                float xr[CIP][JW];
                [[unroll]] for (uint c = 0u; c < CIP; ++c) {
                    const bool cok = ci + c < pc.cig;
                    const uint xrow = (xchan0 + min(ci + c, pc.cig - 1u)) * pc.ldx;
                    [[unroll]] for (uint r = 0u; r < JW; ++r) {
                        const float v = act_in(LD_x(xrow + xi[r]));
                        xr[c][r] = mix(0.0, v, xv[r] && cok);
                    }
                }
                vec4 wa[CIP][TO4], wb[CIP][TO4];
                [[unroll]] for (uint c = 0u; c < CIP; ++c)
                    [[unroll]] for (uint v = 0u; v < TO4; ++v) {
                        wa[c][v] = LD_w4(wrowA + c * o_pad4 + wcol[v]);
                        wb[c][v] = LD_w4(wrowB + c * o_pad4 + wcol[v]);
                    }
                [[unroll]] for (uint v = 0u; v < TO4; ++v) {
                    [[unroll]] for (uint k = 0u; k < J; ++k) {
                        vec4 p = subgroupShuffle(xr[0][(k + 1u) / SG], (k + 1u) % SG) * wa[0][v]
                               + subgroupShuffle(xr[0][k / SG], k % SG) * wb[0][v];
                        [[unroll]] for (uint c = 1u; c < CIP; ++c)
                            p += subgroupShuffle(xr[c][(k + 1u) / SG], (k + 1u) % SG) * wa[c][v]
                               + subgroupShuffle(xr[c][k / SG], k % SG) * wb[c][v];
                        acc[k][v] += p;
                    }
                }
                wrowA += CIP * o_pad4;
                wrowB += CIP * o_pad4;
            }
        }
    }
    // Single taps: the rest (an odd tap, Dp > 1, or EDGE_SELECT).
    [[dont_unroll]] for (; t < t_hi; ++t) {
        const int q = q0 + t * int(pc.P);
        const int mbase = mb + k0 - t * Dp;          // input of output k0 for this tap
        // this lane's window positions: outputs k0 + sl + SG*r
        uint xi[JR];
        bool xv[JR];
        [[unroll]] for (uint r = 0u; r < JR; ++r) {
            const int m = mbase + int(sl + SG * r);
            xv[r] = m >= 0 && m < lw;
            xi[r] = uint(clamp(m, 0, lw - 1)) + pc.xoff;
        }
        bool kv[J];
        if (EDGE_SELECT) {
            [[unroll]] for (uint k = 0u; k < J; ++k) kv[k] = uint(mbase + int(k)) < uint(lw);
        }
        uint wrow = (uint(int(g) * int(pc.K) + q) * pc.ci_pad) * o_pad4;
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
                    if (EDGE_SELECT) p = mix(vec4(0.0), p, bvec4(kv[k]));
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
            const uint ofirst = (obase + o) * pc.tw + uint(i0 + s * k0);
            // a whole block with no activation stores without a branch per output (each branch
            // costs llvmpipe a mask test: on small layers this loop is a good part of the time)
            if (k0 + int(J) <= kend && pc.act == 0u) {
                [[unroll]] for (uint k = 0u; k < J; ++k) outp[ofirst + pc.s * k] = acc[k][v][c] + b;
            } else {
                [[unroll]] for (uint k = 0u; k < J; ++k) {
                    if (k0 + int(k) >= kend) break;
                    outp[ofirst + pc.s * k] = act_apply(acc[k][v][c] + b, ab);
                }
            }
        }
    }
}

VKCONVT_MAIN
