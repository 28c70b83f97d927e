#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#extension GL_EXT_control_flow_attributes : require
// kernel "conv1d_grad_weight_sg": conv_transpose1d's weight gradient shaped for CPU Vulkan devices
// such as lavapipe, on conv1d_grad_weight.comp's piece-local problem (same folding, same flag):
//     gw[g*cig + ci, o, kb + q] (+)= sum over n < nb, m < lx of
//         act_in(x[n, g*cig + ci, xoff + m]) * go[n, g*cog + o, goff + m*s + q*d - pad]
//     over grad_out indices j = m*s + q*d - pad in [0, lg); accumulate == 0 writes gw, 1 adds to it.
// For one tap q this is a matmul with the contraction along m, C (cig x cog) = X (cig x lx) . Gq^T,
// Gq[o, m] = go[o, m*s + q*d - pad], built like matmul_sg: a workgroup owns TM input channels and
// WG*TN output channels of one tap (grid z = tap); per trip of 4 positions, lane l loads rows
// l, l+SG, ... of X as vec4 (R = TM/SG loads) and shares every value with all lanes by
// subgroupShuffle; each lane owns TN output channels (4 per vec4 accumulator) and reads their
// 4 x TN grad_out values as scalars (clamped index, zeroed outside the tap's valid positions
// [m_lo, m_hi], which are uniform over the workgroup). Every loaded x feeds WG*TN multiply-adds,
// every grad_out value TM. The position loop is a real loop; its body is unrolled. The batch is a
// loop around it, so the sum over n and m happens in registers; chunks over length accumulate.
//
// Bindings:
//   0 x   (nb, G*cig, ldx): x[n, c, m] at (n*G*cig + c)*ldx + xoff + m; read as vec4, so ldx must be
//         a multiple of 4 (any xoff: the loop starts at the aligned group holding m_lo) and each row
//         readable up to its aligned group of 4 (rows padded to ldx with finite values, e.g. zeros).
//         Values read outside [m_lo, m_hi] multiply 0 (finite x assumed there).
//   1 go  (nb, G*cog, ldg): go[n, c, j] at (n*G*cog + c)*ldg + goff + j, j < lg (scalar loads)
//   2 gw  (G*cig, cog, ldk) float32, read when accumulate == 1
// Push (this order): nb G cig cog K lx ldx xoff lg ldg goff s d pad ldk kb accumulate OB IB in_act
//   in_slope grid_x grid_y grid_z; OB = ceil(cog / (WG*TN)), IB = ceil(cig / TM).
// Grid: (OB, G*IB, K). Spec constants: 0 WG (8) lanes; 1 TM (64) input channels per workgroup, a
//   multiple of SG, <= 64; 2 TN (4) output channels per lane, a multiple of 4; 3 SG (8) shuffle
//   group (correct for any subgroup size >= SG; shuffles in uniform control flow).

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;
layout(constant_id = 1) const uint TM = 64;
layout(constant_id = 2) const uint TN = 4;
layout(constant_id = 3) const uint SG = 8;
const uint R = TM / SG;
const uint TN4 = TN / 4;

#ifdef VKCONVT_F16
layout(std430, binding = 0) readonly buffer BufX { uvec2 x4_h[]; };     // (nb, G*cig, ldx)
#define LD_x4(i) h4(x4_h[i])
layout(std430, binding = 1) readonly buffer BufGo { uint go_h[]; };     // (nb, G*cog, ldg)
#define LD_go(i) unpackHalf2x16(go_h[(i) >> 1])[(i) & 1u]
#else
layout(std430, binding = 0) readonly buffer BufX { vec4 x4[]; };       // (nb, G*cig, ldx)
#define LD_x4(i) x4[i]
layout(std430, binding = 1) readonly buffer BufGo { float go[]; };     // (nb, G*cog, ldg)
#define LD_go(i) go[i]
#endif
layout(std430, binding = 2) buffer BufGw { float gw[]; };              // (G*cig, cog, ldk)

layout(push_constant) uniform Push {
    uint nb; uint G; uint cig; uint cog; uint K; uint lx; uint ldx; uint xoff; uint lg; uint ldg; uint goff;
    uint s; uint d; int pad; uint ldk; uint kb; uint accumulate; uint OB; uint IB;
    uint in_act; float in_slope;
    uint grid_x; uint grid_y; uint grid_z;
} pc;

#include "common.glsl"
#include "act_in.glsl"

void group(uvec3 G) {
    const uint WG = gl_WorkGroupSize.x;
    const uint lane = gl_LocalInvocationID.x;
    const uint sl = gl_SubgroupInvocationID % SG;
    const uint o0 = G.x * (WG * TN);
    const uint g = G.y / pc.IB;
    const uint i0 = (G.y % pc.IB) * TM;
    const uint q = G.z;
    const int s = int(pc.s);
    const int off = int(q * pc.d) - pc.pad;              // grad_out index of m is m*s + off
    const int m_lo = max(0, ceildiv(-off, s));
    const int m_hi = min(int(pc.lx) - 1, floordiv(int(pc.lg) - 1 - off, s));
    const int lgm = int(pc.lg) - 1;
    // the aligned group of 4 holding m_lo (x rows are 16-byte aligned: ldx % 4 == 0)
    const int m4_lo = m_lo - int((uint(m_lo) + pc.xoff) & 3u);

    vec4 acc[TM][TN4];
    [[unroll]] for (uint i = 0u; i < TM; ++i)
        [[unroll]] for (uint v = 0u; v < TN4; ++v) acc[i][v] = vec4(0.0);

    uint xrow[R];
    [[unroll]] for (uint r = 0u; r < R; ++r)
        xrow[r] = (g * pc.cig + min(i0 + sl + SG * r, pc.cig - 1u)) * pc.ldx + pc.xoff;
    uint grow[TN4][4];
    [[unroll]] for (uint v = 0u; v < TN4; ++v)
        [[unroll]] for (uint c = 0u; c < 4u; ++c)
            grow[v][c] = (g * pc.cog + min(o0 + 4u * (lane + WG * v) + c, pc.cog - 1u)) * pc.ldg + pc.goff;
    const uint xstep = pc.G * pc.cig * pc.ldx;
    const uint gstep = pc.G * pc.cog * pc.ldg;

    for (uint n = 0u; n < pc.nb; ++n) {
        [[dont_unroll]] for (int m4 = m4_lo; m4 <= m_hi; m4 += 4) {
            vec4 av[R];
            [[unroll]] for (uint r = 0u; r < R; ++r) av[r] = act_in4(LD_x4((xrow[r] + uint(m4)) >> 2));
            vec4 bv[4][TN4];
            [[unroll]] for (uint kk = 0u; kk < 4u; ++kk) {
                const int m = m4 + int(kk);
                const bool ok = m >= m_lo && m <= m_hi;
                const uint j = uint(clamp(m * s + off, 0, lgm));
                [[unroll]] for (uint v = 0u; v < TN4; ++v)
                    [[unroll]] for (uint c = 0u; c < 4u; ++c) bv[kk][v][c] = ok ? LD_go(grow[v][c] + j) : 0.0;
            }
            // each accumulator takes its 4 positions in a row (one blend of it per trip)
            [[unroll]] for (uint r = 0u; r < R; ++r) {
                [[unroll]] for (uint i = 0u; i < SG; ++i) {
                    const vec4 a = vec4(subgroupShuffle(av[r].x, i), subgroupShuffle(av[r].y, i),
                                        subgroupShuffle(av[r].z, i), subgroupShuffle(av[r].w, i));
                    [[unroll]] for (uint v = 0u; v < TN4; ++v)
                        acc[r * SG + i][v] += a.x * bv[0][v] + a.y * bv[1][v] + a.z * bv[2][v] + a.w * bv[3][v];
                }
            }
        }
        [[unroll]] for (uint r = 0u; r < R; ++r) xrow[r] += xstep;
        [[unroll]] for (uint v = 0u; v < TN4; ++v)
            [[unroll]] for (uint c = 0u; c < 4u; ++c) grow[v][c] += gstep;
    }

    [[unroll]] for (uint i = 0u; i < TM; ++i) {
        const uint ci = i0 + i;
        if (ci >= pc.cig) break;
        [[unroll]] for (uint v = 0u; v < TN4; ++v) {
            [[unroll]] for (uint c = 0u; c < 4u; ++c) {
                const uint o = o0 + 4u * (lane + WG * v) + c;
                if (o < pc.cog) {
                    const uint idx = ((g * pc.cig + ci) * pc.cog + o) * pc.ldk + pc.kb + q;
                    gw[idx] = pc.accumulate != 0u ? gw[idx] + acc[i][v][c] : acc[i][v][c];
                }
            }
        }
    }
}

VKCONVT_MAIN
