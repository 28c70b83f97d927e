#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
// kernel "conv_transpose_1d_tiled": direct transposed 1-D convolution on a piece-local problem, tiled
// like a matmul, float32.
//
//     out[n, g*cog + o, i] = (has_bias ? bias[g*cog + o] : 0)
//         + sum_{ci < cig, m < lw, q < K : i + pad == m*s + q*d} x[n, g*cig + ci, m] * w[g*cig + ci, o, q]
//     for n < nb (grid z), g < G, o < cog, i < tw; every output in [0, tw) is written.
//
// Phase split. Output i has phase ph = i mod s (0 <= ph < min(s, tw)), i = ph + u*s, and residue
// r = (ph + pad) mod s. The taps reaching phase ph are q = q0 + t*kp (t < T), where kp = s/gcd(s,d)
// and q0 is the least q with q*d == r (mod s) (none when gcd(s,d) does not divide r: those outputs
// get only the bias). Tap t of output u reads input m = u + c - t*dg, with dg = d/gcd(s,d),
// c = floor((ph + pad)/s) - (q0*d - r)/s. So one phase is the matrix product
//     out_ph[o, u] = sum_{(t, ci)} W[(t, ci), o] * X[(t, ci), u],  X[(t, ci), u] = x[ci, u + c - t*dg]
// with input positions outside [0, lw) contributing nothing. A workgroup computes a BM x BN tile
// (output channels o0.. of group g, phase-local outputs u0.. of phase ph, batch n) and walks the
// reduction over only the taps t that reach its outputs from a real input,
//     tlo = max(0, floor((u0 + c - lw)/dg) + 1) .. thi = min(T - 1, floor((ulast + c)/dg)),
// in blocks of BT taps x BC input channels staged through shared memory. Work per tile is
// O((BN + lw)/dg * cig * BM): a long kernel over a short input (or the reverse) never visits taps
// that land on no input.
//
// Bindings (std430, float32, element offsets; every index fits in int32 by host contract):
//   0  x    (nb, G*cig, ldx): x[n, ch, m] at x[(n*G*cig + ch)*ldx + xoff + m], m < lw. Positions
//           outside [0, lw) are never read (no margin needed; host.py uses xoff = 0, ldx = lw).
//   1  w    (G, K, cig, cogp) repacked once per layer by host.repack_weight: w[g*cig+ci, o, q] at
//           ((g*K + q)*cig + ci)*cogp + o; cogp = cog rounded up to a multiple of 4 (zeros), read
//           as vec4 (16-byte loads along o).
//   2  bias (G*cog,)  (any 1-float buffer when has_bias == 0)
//   3  out  (nb, G*cog, tw) contiguous                                           writeonly
//
// Push block (all 32-bit, this order, 88 bytes): host.conv_push fills it.
//   G cig cog cogp K lw ldx xoff tw       problem sizes, x layout
//   s d pad                               stride, dilation, padding (pad: int32 bits, may be < 0)
//   gsd kp dg dinv                        gcd(s,d), s/gsd, d/gsd, inverse of dg modulo kp (0 if kp==1)
//   nph utiles has_bias                   min(s, tw), ceil(ceil(tw/s)/BN), 0/1
//   grid_x grid_y grid_z                  the logical grid, walked grid-stride (common.glsl)
//
// Specialization constants (id: name = default):
//   0: WG_X   = 16   threads along output positions u           (local_size_x_id = 0)
//   1: WG_Y   = 4    threads along output-channel quads          (local_size_y_id = 1)
//   2: TM4    = 1    output-channel quads per thread (TM = 4*TM4 channels, a vec4 each)
//   3: TN     = 4    output positions per thread
//   4: BT     = 1    taps per reduction block
//   5: BC     = 16   input channels per reduction block (pick BC ~ min(cig, 16); depthwise: BC = 1,
//                    BT = 16)
//   6: MASKED = 1    1: a product is formed only where the tap lands on a real input (required
//                    when the weights hold NaN/inf: inf * 0 would otherwise poison outputs the tap
//                    never reaches); 0: out-of-range inputs are staged as 0 and multiplied (valid
//                    only for all-finite weights; host.repack_weight reports finiteness)
//   Workgroup tile: BM = 4*TM4*WG_Y output channels x BN = TN*WG_X outputs; reduction block
//   BK = BT*BC. Grid: (nph*utiles, G*ceil(cog/BM), nb).
//   Constraints: WG_X*WG_Y <= maxComputeWorkGroupInvocations; shared bytes <= maxComputeSharedMemorySize.
//
// Shared memory: 4*BK*(BM + BN) bytes (defaults 16*(16+64)*4 = 5120 bytes).
// Host contract (host.conv_push checks it): s, d, K, tw, lw >= 1 except lw >= 0; (K-1)*d, tw + |pad| + s,
// ceil(tw/s) + |pad|/s + K*dg + lw + utiles*BN and 2*kp fit int32; the flat sizes of x, w and out fit
// uint32 indices. Weight rows are padded to cogp % 4 == 0 (vec4 loads) by repack_weight.
// Features: none beyond Vulkan 1.0 compute (no subgroup ops, no int64, no 16-bit storage).
//
// Memory access: staging W, consecutive lanes read consecutive vec4 along o (a row of cogp floats;
// for BM4 = 1 consecutive lanes walk consecutive (t, ci) rows, also contiguous); staging X,
// consecutive lanes read consecutive input positions of one (tap, channel) row. Compute: thread
// (tx, ty) owns outputs u0 + tx + j*WG_X and channel quads ty + i*WG_Y, reading shared B
// conflict-free (consecutive lanes, consecutive words) and shared W as vec4 broadcasts. Stores:
// consecutive lanes write outputs s floats apart (one phase), i.e. coalesced only for s == 1.

layout(local_size_x_id = 0, local_size_y_id = 1, local_size_z = 1) in;
layout(constant_id = 0) const uint WG_X = 16;
layout(constant_id = 1) const uint WG_Y = 4;
layout(constant_id = 2) const uint TM4 = 1;
layout(constant_id = 3) const uint TN = 4;
layout(constant_id = 4) const uint BT = 1;
layout(constant_id = 5) const uint BC = 16;
layout(constant_id = 6) const uint MASKED = 1;

const uint BM4 = TM4 * WG_Y;          // channel quads per tile
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
layout(std430, binding = 1) readonly buffer BufW { uvec2 w4_h[]; };       // (G, K, cig, cogp)
#define LD_w4(i) h4(w4_h[i])
#else
layout(std430, binding = 1) readonly buffer BufW { vec4 w4[]; };       // (G, K, cig, cogp)
#define LD_w4(i) w4[i]
#endif
layout(std430, binding = 2) readonly buffer BufBias { float bias[]; }; // (G*cog,)
layout(std430, binding = 3) writeonly buffer BufOut { float outp[]; }; // (nb, G*cog, tw)

layout(push_constant) uniform Push {
    uint G; uint cig; uint cog; uint cogp; uint K; uint lw; uint ldx; uint xoff; uint tw;
    uint s; uint d; int pad;
    uint gsd; uint kp; uint dg; uint dinv;
    uint nph; uint utiles; uint has_bias;
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
    const uint gx = G.x;
    const uint gy = G.y;
    const uint n = G.z;

    // ---- which tile (all uniform over the workgroup: early exits happen before any barrier)
    const uint ph = gx / pc.utiles;
    if (ph >= pc.nph) return;
    const uint n_ph = (pc.tw - ph + pc.s - 1u) / pc.s;    // outputs of this phase
    const uint u0 = (gx % pc.utiles) * BN;
    if (u0 >= n_ph) return;
    const uint otiles = (pc.cog + BM - 1u) / BM;
    const uint g = gy / otiles;
    if (g >= pc.G) return;
    const uint o0 = (gy % otiles) * BM;
    const uint ulast = min(u0 + BN, n_ph) - 1u;

    // ---- the taps of this phase and the reduction range of this tile
    const int S = int(pc.s);
    const int a = int(ph) + pc.pad;
    const int J0 = floordiv(a, S);
    const uint r = uint(a - J0 * S);                       // (ph + pad) mod s
    uint q0 = 0u, T = 0u;
    int c = 0;
    if (r % pc.gsd == 0u) {
        q0 = mulmod(r / pc.gsd, pc.dinv, pc.kp);
        if (q0 < pc.K) {
            T = (pc.K - 1u - q0) / pc.kp + 1u;
            c = J0 - int((q0 * pc.d - r) / pc.s);
        }
    }
    const int DG = int(pc.dg);
    const int LW = int(pc.lw);
    const int tlo = max(0, floordiv(int(u0) + c - LW, DG) + 1);
    const int thi = min(int(T) - 1, floordiv(int(ulast) + c, DG));

    const uint xch0 = (n * pc.G + g) * pc.cig;            // first x channel of (n, g)
    const uint cogp4 = pc.cogp / 4u;
    const uint wq0 = o0 / 4u;

    vec4 acc[TN][TM4];
    [[unroll]] for (uint j = 0; j < TN; ++j)
        [[unroll]] for (uint i = 0; i < TM4; ++i) acc[j][i] = vec4(0.0);

    for (int t0 = tlo; t0 <= thi; t0 += int(BT)) {
        for (uint ci0 = 0u; ci0 < pc.cig; ci0 += BC) {
            // ---- stage W[(t, ci), o0 : o0+BM] -> As[k][o/4]   (k = tq*BC + cq)
            [[unroll]] for (uint e0 = 0; e0 < BK * BM4; e0 += NT) {
                const uint e = e0 + tid;
                if (BK * BM4 % NT == 0u || e < BK * BM4) {
                    const uint kr = e / BM4;
                    const uint oq = e % BM4;
                    const int t = t0 + int(kr / BC);
                    const uint ci = ci0 + kr % BC;
                    vec4 v = vec4(0.0);
                    if (t <= thi && ci < pc.cig && wq0 + oq < cogp4) {
                        const uint q = q0 + uint(t) * pc.kp;
                        v = LD_w4(((g * pc.K + q) * pc.cig + ci) * cogp4 + wq0 + oq);
                    }
                    As[kr * BM4 + oq] = v;
                }
            }
            // ---- stage X[(t, ci), u0 : u0+BN] -> Bs[k][u]   (input m = u + c - t*dg, 0 outside [0, lw))
            [[unroll]] for (uint e0 = 0; e0 < BK * BN; e0 += NT) {
                const uint e = e0 + tid;
                if (BK * BN % NT == 0u || e < BK * BN) {
                    const uint kr = e / BN;
                    const uint uu = e % BN;
                    const int t = t0 + int(kr / BC);
                    const uint ci = ci0 + kr % BC;
                    const int m = int(u0 + uu) + c - t * DG;
                    float v = 0.0;
                    if (t <= thi && ci < pc.cig && m >= 0 && m < LW)
                        v = act_in(LD_x((xch0 + ci) * pc.ldx + pc.xoff + uint(m)));
                    Bs[kr * BN + uu] = v;
                }
            }
            barrier();

            // ---- BK rank-1 updates of the (TN outputs) x (4*TM4 channels) register tile
            [[unroll]] for (uint kk = 0; kk < BK; ++kk) {
                vec4 av[TM4];
                float bv[TN];
                [[unroll]] for (uint i = 0; i < TM4; ++i) av[i] = As[kk * BM4 + ty + i * WG_Y];
                [[unroll]] for (uint j = 0; j < TN; ++j) bv[j] = Bs[kk * BN + tx + j * WG_X];
                if (MASKED != 0u) {
                    const int tsh = (t0 + int(kk / BC)) * DG;
                    [[unroll]] for (uint j = 0; j < TN; ++j) {
                        const int m = int(u0 + tx + j * WG_X) + c - tsh;
                        if (m >= 0 && m < LW) {
                            [[unroll]] for (uint i = 0; i < TM4; ++i) acc[j][i] = fma(av[i], vec4(bv[j]), acc[j][i]);
                        }
                    }
                } else {
                    [[unroll]] for (uint j = 0; j < TN; ++j)
                        [[unroll]] for (uint i = 0; i < TM4; ++i) acc[j][i] = fma(av[i], vec4(bv[j]), acc[j][i]);
                }
            }
            barrier();
        }
    }

    // ---- store (every output of the tile is written: bias + sum, or bias alone)
    const uint obase = (n * pc.G + g) * pc.cog;
    [[unroll]] for (uint i = 0; i < TM4; ++i) {
        [[unroll]] for (uint q = 0; q < 4u; ++q) {
            const uint o = o0 + 4u * (ty + i * WG_Y) + q;
            if (o < pc.cog) {
                const float bv = pc.has_bias != 0u ? bias[g * pc.cog + o] : 0.0;
                [[unroll]] for (uint j = 0; j < TN; ++j) {
                    const uint u = u0 + tx + j * WG_X;
                    if (u < n_ph) outp[(obase + o) * pc.tw + ph + u * pc.s] = act_out(acc[j][i][q] + bv, g * pc.cog + o, pc.G * pc.cog);
                }
            }
        }
    }
}

VKCONVT_MAIN
