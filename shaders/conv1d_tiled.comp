#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
// kernel "conv1d_tiled": direct conv1d shaped for real GPUs, an implicit GEMM per (n, g):
//     out[o, i] = sum over (q, ci) of W[(q, ci), o] * X[(q, ci), i],   X[(q, ci), i] = x[ci, i*s + q*d - pad]
// i.e. [cog x (K*cig)] . [(K*cig) x tw] without a column buffer, on conv1d.comp's piece-local problem:
//     out[n, g*cog + o, ooff + i] = (has_bias ? bias[g*cog + o] : 0)
//         + sum over ci < cig, q < K of w[g*cog + o, ci, kb + q] * x[n, g*cig + ci, xoff + i*s + q*d - pad]
//     for n < nb (grid z), g < G, o < cog, i < tw; x positions outside [0, lw) read 0 (zero padding).
// A workgroup computes a BM x BN tile (output channels o0.., outputs u0.. of one (n, g)) and walks
// only the taps that reach an input for one of its outputs,
//     q_lo = max(0, ceil((pad - ulast*s)/d)) .. q_hi = min(K-1, floor((lw - 1 + pad - u0*s)/d)),
// in blocks of BT taps x BC input channels staged through shared memory.
//
// Bindings (std430, element offsets; piece-local indices fit int32 by host contract):
//   0 x    (nb, G*cig, ldx): x[n, c, m] at (n*G*cig + c)*ldx + xoff + m, m < lw; never read outside
//   1 w    (G, wk, cig, cogp) repacked once per layer (conv1d_shaped.tiled_weights): w[g*cog + o, ci, k]
//          at ((g*wk + k)*cig + ci)*cogp + o, cogp = cog rounded up to 4 (zeros), read as vec4;
//          a piece reads taps kb + q
//   2 bias (G*cog,)  (any 1-float buffer when has_bias == 0 and act is not a snake)
//   3 out  (nb, G*cog, ldo): out[n, c, ooff + i]                                         writeonly
// Push (32-bit, this order): G cig cog cogp K kb wk lw ldx xoff tw ldo ooff s d pad utiles has_bias
//   act act_slope in_act in_slope grid_x grid_y grid_z; utiles = ceil(tw / BN).
// Spec constants: 0 WG_X threads along outputs; 1 WG_Y threads along channel quads; 2 TM4 channel
//   quads per thread; 3 TN outputs per thread; 4 BT taps and 5 BC input channels per reduction
//   block. Tile BM = 4*TM4*WG_Y channels x BN = TN*WG_X outputs, BK = BT*BC; shared memory
//   4*BK*(BM + BN) bytes. Grid: (utiles, G*ceil(cog/BM), nb).
// Memory access: staging W, consecutive lanes read consecutive vec4 along o; staging X, consecutive
// lanes read consecutive outputs' inputs (contiguous for s == 1); thread (tx, ty) owns outputs
// u0 + tx + j*WG_X and channel quads ty + i*WG_Y, so stores are coalesced along the output row.
// Features: Vulkan 1.0 compute only. A weight times a zero-padding input is multiplied (as PyTorch).

layout(local_size_x_id = 0, local_size_y_id = 1, local_size_z = 1) in;
layout(constant_id = 0) const uint WG_X = 16;
layout(constant_id = 1) const uint WG_Y = 4;
layout(constant_id = 2) const uint TM4 = 1;
layout(constant_id = 3) const uint TN = 4;
layout(constant_id = 4) const uint BT = 1;
layout(constant_id = 5) const uint BC = 16;

const uint BM4 = TM4 * WG_Y;
const uint BM = 4u * BM4;
const uint BN = TN * WG_X;
const uint BK = BT * BC;
const uint NT = WG_X * WG_Y;

#ifdef VKCONVT_F16
layout(std430, binding = 0) readonly buffer BufX { uint x_h[]; };       // (nb, G*cig, ldx)
#define LD_x(i) unpackHalf2x16(x_h[(i) >> 1])[(i) & 1u]
#else
layout(std430, binding = 0) readonly buffer BufX { float x[]; };       // (nb, G*cig, ldx)
#define LD_x(i) x[i]
#endif
#ifdef VKCONVT_F16
layout(std430, binding = 1) readonly buffer BufW { uvec2 w4_h[]; };     // (G, wk, cig, cogp)
#define LD_w4(i) h4(w4_h[i])
#else
layout(std430, binding = 1) readonly buffer BufW { vec4 w4[]; };       // (G, wk, cig, cogp)
#define LD_w4(i) w4[i]
#endif
layout(std430, binding = 2) readonly buffer BufBias { float bias[]; }; // (G*cog,)
layout(std430, binding = 3) writeonly buffer BufOut { float outp[]; }; // (nb, G*cog, ldo)

layout(push_constant) uniform Push {
    uint G; uint cig; uint cog; uint cogp; uint K; uint kb; uint wk; uint lw; uint ldx; uint xoff;
    uint tw; uint ldo; uint ooff; uint s; uint d; int pad; uint utiles; uint has_bias;
    uint act; float act_slope; uint in_act; float in_slope;
    uint grid_x; uint grid_y; uint grid_z;
} pc;

#include "common.glsl"
#include "act_in.glsl"
#include "act_out.glsl"

shared vec4 As[BK * BM4];
shared float Bs[BK * BN];

void group(uvec3 G) {
    const uint tx = gl_LocalInvocationID.x;
    const uint ty = gl_LocalInvocationID.y;
    const uint tid = ty * WG_X + tx;
    // which tile (uniform over the workgroup: early exits happen before any barrier)
    const uint u0 = G.x * BN;
    if (u0 >= pc.tw) return;
    const uint otiles = (pc.cog + BM - 1u) / BM;
    const uint g = G.y / otiles;
    const uint o0 = (G.y % otiles) * BM;
    const uint n = G.z;
    const uint ulast = min(u0 + BN, pc.tw) - 1u;
    const int s = int(pc.s);
    const int d = int(pc.d);
    const int lw = int(pc.lw);
    const int q_lo = max(0, ceildiv(pc.pad - int(ulast) * s, d));
    const int q_hi = min(int(pc.K) - 1, floordiv(lw - 1 + pc.pad - int(u0) * s, d));

    const uint xch0 = (n * pc.G + g) * pc.cig;
    const uint cogp4 = pc.cogp / 4u;
    const uint wq0 = o0 / 4u;

    vec4 acc[TN][TM4];
    [[unroll]] for (uint j = 0; j < TN; ++j)
        [[unroll]] for (uint i = 0; i < TM4; ++i) acc[j][i] = vec4(0.0);

    for (int t0 = q_lo; t0 <= q_hi; t0 += int(BT)) {
        for (uint ci0 = 0u; ci0 < pc.cig; ci0 += BC) {
            // stage W[(q, ci), o0 : o0+BM] -> As[k][o/4]   (k = tq*BC + cq)
            [[unroll]] for (uint e0 = 0; e0 < BK * BM4; e0 += NT) {
                const uint e = e0 + tid;
                if (BK * BM4 % NT == 0u || e < BK * BM4) {
                    const uint kr = e / BM4;
                    const uint oq = e % BM4;
                    const int q = t0 + int(kr / BC);
                    const uint ci = ci0 + kr % BC;
                    vec4 v = vec4(0.0);
                    if (q <= q_hi && ci < pc.cig && wq0 + oq < cogp4)
                        v = LD_w4(((g * pc.wk + pc.kb + uint(q)) * pc.cig + ci) * cogp4 + wq0 + oq);
                    As[kr * BM4 + oq] = v;
                }
            }
            // stage X[(q, ci), u0 : u0+BN] -> Bs[k][u]   (input m = u*s + q*d - pad, 0 outside [0, lw))
            [[unroll]] for (uint e0 = 0; e0 < BK * BN; e0 += NT) {
                const uint e = e0 + tid;
                if (BK * BN % NT == 0u || e < BK * BN) {
                    const uint kr = e / BN;
                    const uint uu = e % BN;
                    const int q = t0 + int(kr / BC);
                    const uint ci = ci0 + kr % BC;
                    const int m = int(u0 + uu) * s + q * d - pc.pad;
                    float v = 0.0;
                    if (q <= q_hi && ci < pc.cig && m >= 0 && m < lw)
                        v = act_in(LD_x((xch0 + ci) * pc.ldx + pc.xoff + uint(m)));
                    Bs[kr * BN + uu] = v;
                }
            }
            barrier();
            // BK rank-1 updates of the (TN outputs) x (4*TM4 channels) register tile
            [[unroll]] for (uint kk = 0; kk < BK; ++kk) {
                vec4 av[TM4];
                float bv[TN];
                [[unroll]] for (uint i = 0; i < TM4; ++i) av[i] = As[kk * BM4 + ty + i * WG_Y];
                [[unroll]] for (uint j = 0; j < TN; ++j) bv[j] = Bs[kk * BN + tx + j * WG_X];
                [[unroll]] for (uint j = 0; j < TN; ++j)
                    [[unroll]] for (uint i = 0; i < TM4; ++i) acc[j][i] = fma(av[i], vec4(bv[j]), acc[j][i]);
            }
            barrier();
        }
    }

    // store: consecutive lanes write consecutive outputs of a row
    const uint obase = (n * pc.G + g) * pc.cog;
    [[unroll]] for (uint i = 0; i < TM4; ++i) {
        [[unroll]] for (uint c = 0; c < 4u; ++c) {
            const uint o = o0 + 4u * (ty + i * WG_Y) + c;
            if (o < pc.cog) {
                const float bv = pc.has_bias != 0u ? bias[g * pc.cog + o] : 0.0;
                const vec2 ab = act_coef(g * pc.cog + o, pc.G * pc.cog);
                [[unroll]] for (uint j = 0; j < TN; ++j) {
                    const uint u = u0 + tx + j * WG_X;
                    if (u < pc.tw) outp[(obase + o) * pc.ldo + pc.ooff + u] = act_apply(acc[j][i][c] + bv, ab);
                }
            }
        }
    }
}

VKCONVT_MAIN
