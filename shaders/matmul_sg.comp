#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#extension GL_EXT_control_flow_attributes : require
// kernel "matmul", subgroup variant for CPU Vulkan devices such as lavapipe:
//     C[b] = A[b % a_batch_mod] . B[b][:, b_offset : b_offset + N]      float32, row-major, any M, N, K >= 1
//
// Bindings (float32 arrays, indices in floats; each is also declared as a vec4/vec2 view):
//   0 A: element (b, m, k) at (b % a_batch_mod) * a_batch_stride + m * lda + k
//   1 B: element (b, k, n) at b * b_batch_stride + b_offset + k * ldb + n
//   2 C: element (b, m, n) at b * c_batch_stride + m * ldc + n          (only [0,M) x [0,N) written)
// Push block (uint, in this order): M N K lda ldb ldc a_batch_mod a_batch_stride b_batch_stride
//   c_batch_stride b_offset grid_x grid_y grid_z   (the logical grid, walked grid-stride: common.glsl)
// Spec constants (lavapipe defaults in vkconvt/kernels: 8, 64, 4, 8, 4):
//   0 WG  lanes per workgroup (local_size_x)
//   1 TM  rows of C per workgroup, multiple of SG, <= 64 (TM 96/128 crash lavapipe 25.0.7's compiler)
//   2 TN  columns of C per lane, multiple of 4 (a workgroup covers WG*TN columns)
//   3 SG  broadcast group: lanes 0..SG-1 of each subgroup load the TM rows of A, SG rows each
//   4 KK  k per trip of the main loop: 4 (A read as vec4) or 2 (vec2); the K % KK tail is a loop of its own
// Grid: (ceil(N / (WG*TN)), ceil(M / TM), batches).
// Requirements:
//   * Subgroups: GL_KHR_shader_subgroup_basic + _shuffle. subgroupShuffle with a lane index that is
//     a constant after unrolling, in uniform control flow. Correct for every subgroup size >= SG
//     (the host sets SG = min(8, minSubgroupSize); SG = 4 also works, with TM a multiple of 4).
//   * Alignment: lda, ldb, ldc, a_batch_stride, b_batch_stride, c_batch_stride and b_offset are
//     multiples of 4 (vec4 reads and writes; the host pads rows with zeros).
//   * B is read up to 3 floats past column N-1 of a row; with ldb a multiple of 4 that stays in the
//     row's padding, so the B buffer must hold whole padded rows (ldb*K floats per batch from b_offset's
//     row start). Those values only feed columns >= N, which are never stored.
// Why it is fast on llvmpipe: a storage-buffer load there is a per-lane loop with a bounds check
// per component (about 37 instructions per lane for a vec4, 14 for a float, against 2 for a
// multiply-add), so loads, not FMAs, set the speed. A vec4 view shares the per-lane overhead over
// 4 floats (NIR does not merge 4 adjacent float loads here). Lane l of a subgroup loads KK
// consecutive k of A rows l, l+SG, ... and every A value reaches all lanes with a shuffle (one
// vpermd); each lane owns TN columns read as vec4 along n. Every loaded B float feeds TM
// multiply-adds, every A float WG*TN. Each accumulator takes its KK products in a row, because
// llvmpipe stores every loop-carried value with a masked blend once per trip. The k loop is a real
// loop ([[dont_unroll]]); everything inside it is unrolled ([[unroll]]).

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;
layout(constant_id = 1) const uint TM = 64;
layout(constant_id = 2) const uint TN = 4;
layout(constant_id = 3) const uint SG = 8;
layout(constant_id = 4) const uint KK = 4;   // k per trip of the main loop: 4 (vec4 A loads) or 2 (vec2)
const uint R = TM / SG;      // A rows loaded per lane
const uint TN4 = TN / 4;     // vec4 column groups per lane

// Float and vec4/vec2 views of one binding: a vec4 load is one per-lane access on llvmpipe where
// four float loads are four.
#ifdef VKCONVT_F16
layout(std430, binding = 0) readonly buffer BufA { uint a_h[]; };       // (a_batch_mod, M, lda)
#define LD_a(i) unpackHalf2x16(a_h[(i) >> 1])[(i) & 1u]
#else
layout(std430, binding = 0) readonly buffer BufA { float a[]; };       // (a_batch_mod, M, lda)
#define LD_a(i) a[i]
#endif
#ifdef VKCONVT_F16
layout(std430, binding = 0) readonly buffer BufA4 { uvec2 a4_h[]; };
#define LD_a4(i) h4(a4_h[i])
#else
layout(std430, binding = 0) readonly buffer BufA4 { vec4 a4[]; };
#define LD_a4(i) a4[i]
#endif
#ifdef VKCONVT_F16
layout(std430, binding = 0) readonly buffer BufA2 { uint a2_h[]; };
#define LD_a2(i) unpackHalf2x16(a2_h[i])
#else
layout(std430, binding = 0) readonly buffer BufA2 { vec2 a2[]; };
#define LD_a2(i) a2[i]
#endif
#ifdef VKCONVT_F16
layout(std430, binding = 1) readonly buffer BufB4 { uvec2 b4_h[]; };      // (batch, K, ldb)
#define LD_b4(i) h4(b4_h[i])
#else
layout(std430, binding = 1) readonly buffer BufB4 { vec4 b4[]; };      // (batch, K, ldb)
#define LD_b4(i) b4[i]
#endif
#ifdef VKCONVT_F16
layout(std430, binding = 2) writeonly buffer BufC { uvec2 c4_h[]; };   // (batch, M, ldc); 4 halves per uvec2
#else
layout(std430, binding = 2) writeonly buffer BufC { float c[]; };      // (batch, M, ldc)
layout(std430, binding = 2) writeonly buffer BufC4 { vec4 c4[]; };
#endif

layout(push_constant) uniform Push {
    uint M; uint N; uint K;
    uint lda; uint ldb; uint ldc;
    uint a_batch_mod; uint a_batch_stride; uint b_batch_stride; uint c_batch_stride;
    uint b_offset;
    uint in_act; float in_slope;
    uint grid_x; uint grid_y; uint grid_z;
} pc;

#include "common.glsl"
#include "act_in.glsl"


// i must be a multiple of 4 (alignment requirement)
vec4 ld4a(uint i) { return LD_a4(i >> 2); }
vec4 ld4b(uint i) { return act_in4(LD_b4(i >> 2)); }

void group(uvec3 G) {
    const uint WG = gl_WorkGroupSize.x;
    const uint lane = gl_LocalInvocationID.x;
    const uint sl = gl_SubgroupInvocationID % SG;
    const uint col0 = G.x * (WG * TN);
    const uint row0 = G.y * TM;
    const uint batch = G.z;

    const uint a_base = (batch % pc.a_batch_mod) * pc.a_batch_stride;
    const uint b_base = batch * pc.b_batch_stride + pc.b_offset;

    // A rows this lane loads: row0 + sl + SG*r (clamped to a valid row; results of rows >= M are
    // never stored).
    uint arow[R];
    [[unroll]] for (uint r = 0u; r < R; ++r) arow[r] = a_base + min(row0 + sl + SG * r, pc.M - 1u) * pc.lda;
    // B columns this lane owns: col0 + 4*(lane + WG*v) + {0..3}; fully-outside groups are clamped
    // onto the last group that starts inside [0, N).
    const uint last4 = ((pc.N - 1u) / 4u) * 4u;
    uint bcol[TN4];
    [[unroll]] for (uint v = 0u; v < TN4; ++v) bcol[v] = b_base + min(col0 + 4u * (lane + WG * v), last4);

    vec4 acc[TM][TN4];
    [[unroll]] for (uint i = 0u; i < TM; ++i)
        [[unroll]] for (uint v = 0u; v < TN4; ++v) acc[i][v] = vec4(0.0);

    const uint K4 = pc.K & ~(KK - 1u);
    uint brow = 0u;
    [[dont_unroll]] for (uint k = 0u; k < K4; k += KK) {
        vec4 av[R];
        [[unroll]] for (uint r = 0u; r < R; ++r) {
            if (KK == 4u) av[r] = ld4a(arow[r] + k);
            else av[r] = vec4(LD_a2((arow[r] + k) >> 1), 0.0, 0.0);
        }
        vec4 bv[KK][TN4];
        [[unroll]] for (uint kk = 0u; kk < KK; ++kk) {
            [[unroll]] for (uint v = 0u; v < TN4; ++v) bv[kk][v] = ld4b(bcol[v] + brow);
            brow += pc.ldb;
        }
        // Each accumulator takes its KK k-steps in a row (one load/blend/store of it per trip).
        [[unroll]] for (uint r = 0u; r < R; ++r) {
            [[unroll]] for (uint i = 0u; i < SG; ++i) {
                float s[KK];
                [[unroll]] for (uint kk = 0u; kk < KK; ++kk) s[kk] = subgroupShuffle(av[r][kk], i);
                [[unroll]] for (uint v = 0u; v < TN4; ++v) {
                    vec4 p = s[0] * bv[0][v] + s[1] * bv[1][v];
                    if (KK == 4u) p += s[2] * bv[2][v] + s[3] * bv[3][v];
                    acc[r * SG + i][v] += p;
                }
            }
        }
    }
    // k tail (K % 4 values): scalar A loads, one k at a time.
    [[dont_unroll]] for (uint k = K4; k < pc.K; ++k) {
        float av[R];
        [[unroll]] for (uint r = 0u; r < R; ++r) av[r] = LD_a(arow[r] + k);
        vec4 bv[TN4];
        [[unroll]] for (uint v = 0u; v < TN4; ++v) bv[v] = ld4b(bcol[v] + brow);
        brow += pc.ldb;
        [[unroll]] for (uint r = 0u; r < R; ++r) {
            [[unroll]] for (uint i = 0u; i < SG; ++i) {
                const float s = subgroupShuffle(av[r], i);
                [[unroll]] for (uint v = 0u; v < TN4; ++v) acc[r * SG + i][v] += s * bv[v];
            }
        }
    }

    const uint c_base = batch * pc.c_batch_stride;
    [[unroll]] for (uint v = 0u; v < TN4; ++v) {
        const uint col = col0 + 4u * (lane + WG * v);
        if (col >= pc.N) continue;
        const bool full = col + 3u < pc.N;
        [[unroll]] for (uint i = 0u; i < TM; ++i) {
            const uint row = row0 + i;
            if (row >= pc.M) break;
            const uint o = c_base + row * pc.ldc + col;
#ifdef VKCONVT_F16
            // ldc is a multiple of 4: the columns past N in the last quad are row padding
            c4_h[o >> 2] = pack4(acc[i][v]);
#else
            if (full) {
                c4[o >> 2] = acc[i][v];
            } else {
                c[o] = acc[i][v].x;
                if (col + 1u < pc.N) c[o + 1u] = acc[i][v].y;
                if (col + 2u < pc.N) c[o + 2u] = acc[i][v].z;
            }
#endif
        }
    }
}

VKCONVT_MAIN
