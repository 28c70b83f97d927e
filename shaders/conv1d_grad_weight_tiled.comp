#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
// kernel "conv1d_grad_weight_tiled": conv_transpose1d's weight gradient shaped for real GPUs, on
// conv1d_grad_weight.comp's piece-local problem (same folding, same accumulate flag):
//     gw[g*cig + ci, o, kb + q] (+)= sum over n < nb, m < lx of
//         act_in(x[n, g*cig + ci, xoff + m]) * go[n, g*cog + o, goff + m*s + q*d - pad]
//     over grad_out indices j = m*s + q*d - pad in [0, lg); accumulate == 0 writes gw, 1 adds to it.
// Per tap q (grid z) a matmul C (cig x cog) = X (cig x lx) . Gq^T, Gq[o, m] = go[o, m*s + q*d - pad],
// whose operands are both rows along the reduction m: a workgroup owns a BM x BN tile (input
// channels x output channels) and walks the positions [m_lo, m_hi] that reach grad_out (uniform
// over the workgroup), for every batch entry, in blocks of BK staged through shared memory.
// Staging: consecutive lanes read consecutive positions of one row (coalesced; for go when s == 1),
// stored transposed ([m][ci], [m][o], rows padded by one word against bank conflicts). Compute:
// thread (tx, ty) owns channels ci = ty + i*WG_Y (i < TM) and o = tx + j*WG_X (j < TN), so shared
// reads are broadcasts (As) and consecutive words (Bs). The batch and length sums stay in registers.
//
// Bindings:
//   0 x   (nb, G*cig, ldx): x[n, c, m] at (n*G*cig + c)*ldx + xoff + m (m < lx; never read outside)
//   1 go  (nb, G*cog, ldg): go[n, c, j] at (n*G*cog + c)*ldg + goff + j (j < lg; never read outside)
//   2 gw  (G*cig, cog, ldk) float32, read when accumulate == 1
// Push (this order): nb G cig cog K lx ldx xoff lg ldg goff s d pad ldk kb accumulate OB IB in_act
//   in_slope grid_x grid_y grid_z; OB = ceil(cog / BN), IB = ceil(cig / BM).
// Spec constants: 0 WG_X threads along o; 1 WG_Y threads along ci; 2 TM input channels and 3 TN
//   output channels per thread; 4 BK positions per block. BM = TM*WG_Y, BN = TN*WG_X; shared
//   memory 4*BK*(BM + BN + 2) bytes. Grid: (OB, G*IB, K). Vulkan 1.0 compute only.

layout(local_size_x_id = 0, local_size_y_id = 1, local_size_z = 1) in;
layout(constant_id = 0) const uint WG_X = 16;
layout(constant_id = 1) const uint WG_Y = 16;
layout(constant_id = 2) const uint TM = 4;
layout(constant_id = 3) const uint TN = 4;
layout(constant_id = 4) const uint BK = 16;

const uint BM = TM * WG_Y;
const uint BN = TN * WG_X;
const uint BMP = BM + 1u;
const uint BNP = BN + 1u;
const uint NT = WG_X * WG_Y;

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
    uint s; uint d; int pad; uint ldk; uint kb; uint accumulate; uint OB; uint IB;
    uint in_act; float in_slope;
    uint grid_x; uint grid_y; uint grid_z;
} pc;

#include "common.glsl"
#include "act_in.glsl"

shared float As[BK * BMP];
shared float Bs[BK * BNP];

void group(uvec3 G) {
    const uint tx = gl_LocalInvocationID.x;
    const uint ty = gl_LocalInvocationID.y;
    const uint tid = ty * WG_X + tx;
    const uint o0 = G.x * BN;
    const uint g = G.y / pc.IB;
    const uint i0 = (G.y % pc.IB) * BM;
    const uint q = G.z;
    const int s = int(pc.s);
    const int off = int(q * pc.d) - pc.pad;              // grad_out index of m is m*s + off
    const int m_lo = max(0, ceildiv(-off, s));
    const int m_hi = min(int(pc.lx) - 1, floordiv(int(pc.lg) - 1 - off, s));

    float acc[TM][TN];
    [[unroll]] for (uint i = 0; i < TM; ++i)
        [[unroll]] for (uint j = 0; j < TN; ++j) acc[i][j] = 0.0;

    for (uint n = 0u; n < pc.nb; ++n) {
        const uint xb = (n * pc.G + g) * pc.cig * pc.ldx + pc.xoff;
        const uint gb = (n * pc.G + g) * pc.cog * pc.ldg + pc.goff;
        for (int m0 = m_lo; m0 <= m_hi; m0 += int(BK)) {
            // stage X[i0 : i0+BM, m0 : m0+BK] -> As[m][ci]
            [[unroll]] for (uint e0 = 0; e0 < BM * BK; e0 += NT) {
                const uint e = e0 + tid;
                if (BM * BK % NT == 0u || e < BM * BK) {
                    const uint row = e / BK;
                    const uint kk = e % BK;
                    const int m = m0 + int(kk);
                    float v = 0.0;
                    if (i0 + row < pc.cig && m <= m_hi) v = act_in(LD_x(xb + (i0 + row) * pc.ldx + uint(m)));
                    As[kk * BMP + row] = v;
                }
            }
            // stage Gq[o0 : o0+BN, m0 : m0+BK] -> Bs[m][o]
            [[unroll]] for (uint e0 = 0; e0 < BN * BK; e0 += NT) {
                const uint e = e0 + tid;
                if (BN * BK % NT == 0u || e < BN * BK) {
                    const uint col = e / BK;
                    const uint kk = e % BK;
                    const int m = m0 + int(kk);
                    float v = 0.0;
                    if (o0 + col < pc.cog && m <= m_hi) v = LD_go(gb + (o0 + col) * pc.ldg + uint(m * s + off));
                    Bs[kk * BNP + col] = v;
                }
            }
            barrier();
            [[unroll]] for (uint kk = 0; kk < BK; ++kk) {
                float av[TM], bv[TN];
                [[unroll]] for (uint i = 0; i < TM; ++i) av[i] = As[kk * BMP + ty + i * WG_Y];
                [[unroll]] for (uint j = 0; j < TN; ++j) bv[j] = Bs[kk * BNP + tx + j * WG_X];
                [[unroll]] for (uint i = 0; i < TM; ++i)
                    [[unroll]] for (uint j = 0; j < TN; ++j) acc[i][j] = fma(av[i], bv[j], acc[i][j]);
            }
            barrier();
        }
    }

    [[unroll]] for (uint i = 0; i < TM; ++i) {
        const uint ci = i0 + ty + i * WG_Y;
        if (ci < pc.cig) {
            [[unroll]] for (uint j = 0; j < TN; ++j) {
                const uint o = o0 + tx + j * WG_X;
                if (o < pc.cog) {
                    const uint idx = ((g * pc.cig + ci) * pc.cog + o) * pc.ldk + pc.kb + q;
                    gw[idx] = pc.accumulate != 0u ? gw[idx] + acc[i][j] : acc[i][j];
                }
            }
        }
    }
}

VKCONVT_MAIN
