#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
// kernel "matmul_tiled": the GPU-shaped batched matmul, float32, row-major, any M, N, K >= 1.
//
//     C[b] = A[b % a_batch_mod] · B[b][:, b_offset : b_offset + N]        for b < batch
//     C[b][m][n] = sum_{k<K} A[b % a_batch_mod][m][k] * B[b][k][b_offset + n]
//
// Split-K (KS > 1): the reduction is cut into KS slices of KC = roundup(ceil(K / KS), BK) rows, one
// per workgroup along z, so a grid too small to fill a GPU gets KS times the workgroups without
// shrinking the tiles. Slice j writes its partial product to C[j * batch + b] (KS copies of C, each
// batch * c_batch_stride floats); the consumer sums them in a fixed order (col2im_1d's and
// bias_act_1d's `slices`): no atomics, the same result on every run. A slice past K writes zeros.
// grid z = KS * batch.
//
// Same push-constant semantics as shaders/matmul.comp (a drop-in replacement; only the
// specialization constants and the grid differ).
//
// Bindings (std430, float32, element offsets, every index < 2^32):
//   0  A  (a_batch_mod, M, lda) at a[(b % a_batch_mod)*a_batch_stride + m*lda + k]    readonly
//   1  B  (batch, K, ldb)       at b[b*b_batch_stride + k*ldb + b_offset + n]         readonly
//   2  C  (KS, batch, M, ldc)   at c[(j*batch + b)*c_batch_stride + m*ldc + n]        writeonly
//   Bindings 0/1/2 are also declared as vec4 arrays (the same buffers, aliased) for 16-byte loads
//   and stores; those are used only where the alignment test below holds, so any alignment works.
//
// Push block (all uint, this order, 56 bytes):
//   M N K lda ldb ldc a_batch_mod a_batch_stride b_batch_stride c_batch_stride b_offset
//   grid_x grid_y grid_z        (the logical grid, walked grid-stride: common.glsl)
//
// Specialization constants (id: name = default):
//   0: WG_X = 16   workgroup size x = threads along N      (local_size_x_id = 0)
//   1: WG_Y = 16   workgroup size y = threads along M      (local_size_y_id = 1)
//   2: TM   = 4    rows of C per thread (scalars)
//   3: TN4  = 1    column quads of C per thread (TN = 4*TN4 columns, held as vec4)
//   4: BK   = 16   depth of the shared-memory k tile; must be a multiple of 4, >= 4
//   5: KS   = 1    slices of the reduction (split-K, see above); 1: C is written whole
//   Workgroup tile: BM = TM*WG_Y rows by BN = 4*TN4*WG_X columns.
//   Constraints: WG_X*WG_Y <= maxComputeWorkGroupInvocations (and <= maxComputeWorkGroupSize per
//   dimension); shared bytes <= maxComputeSharedMemorySize; a multiple of the subgroup size is best.
//   Logical grid: (ceil(N / BN), ceil(M / BM), KS * batch), walked grid-stride (common.glsl).
//
// Shared memory: 4*BK*(BM + APAD) + 4*BK*BN bytes, APAD = BK >= 32 ? 1 : 32/BK
//   (defaults: BM 64, BN 64, BK 16 -> 8320 bytes; host.py checks it against the device limit).
// Features: none beyond Vulkan 1.0 compute (no subgroup ops, no int64, no 16-bit storage).
//
// Thread mapping (thread (tx, ty) of the WG_X x WG_Y workgroup):
//   rows    m = m0 + ty + i*WG_Y          (i < TM)   -> shared A reads are broadcasts
//   columns n = n0 + 4*(tx + j*WG_X) + c  (j < TN4)  -> consecutive lanes read consecutive vec4 of
//                                                       shared B and store consecutive vec4 of C
// Per k tile: the workgroup stages A[m0:m0+BM, k0:k0+BK] transposed into As[BK][BM+APAD] (global
//   loads: consecutive lanes read consecutive vec4 along a row of A) and B[k0:k0+BK, n0:n0+BN]
//   into Bs[BK][BN/4] (consecutive lanes read consecutive vec4 along a row of B), then every thread
//   does BK * TM * TN multiply-adds from shared memory into its register tile.
// Edges: out-of-range rows, columns and k are staged as zeros (a padded k pairs a zero of A with a
//   zero of B; a padded row or column is never stored), so NaN/inf propagate exactly as in a plain
//   float sum over the real k. Vector accesses are used only when the whole vector is in range and
//   16-byte aligned (ld% 4 == 0, batch stride % 4 == 0, b_offset % 4 == 0), else scalar.

layout(local_size_x_id = 0, local_size_y_id = 1, local_size_z = 1) in;
layout(constant_id = 0) const uint WG_X = 16;
layout(constant_id = 1) const uint WG_Y = 16;
layout(constant_id = 2) const uint TM = 4;
layout(constant_id = 3) const uint TN4 = 1;
layout(constant_id = 4) const uint BK = 16;
layout(constant_id = 5) const uint KS = 1;

const uint BM = TM * WG_Y;
const uint BN = 4u * TN4 * WG_X;
const uint BN4 = TN4 * WG_X;          // vec4 per row of the B tile
const uint BK4 = BK / 4u;
// Padded row of the transposed A tile: with BK/4 lanes per row of A, a warp of 32 stores rows
// ty..ty+32/(BK/4) of BK/4 vec4 columns; BMP = BM + 8/(BK/4) (BM a multiple of 8) puts those
// stores in distinct banks. Reads (consecutive rows) are conflict-free for any pad.
const uint APAD = BK4 >= 8u ? 1u : 8u / BK4;
const uint BMP = BM + APAD;
const uint NT = WG_X * WG_Y;          // threads per workgroup

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
layout(std430, binding = 1) readonly buffer BufB { uint b_h[]; };       // (batch, K, ldb)
#define LD_b(i) unpackHalf2x16(b_h[(i) >> 1])[(i) & 1u]
#else
layout(std430, binding = 1) readonly buffer BufB { float b[]; };       // (batch, K, ldb)
#define LD_b(i) b[i]
#endif
#ifdef VKCONVT_F16
layout(std430, binding = 1) readonly buffer BufB4 { uvec2 b4_h[]; };
#define LD_b4(i) h4(b4_h[i])
#else
layout(std430, binding = 1) readonly buffer BufB4 { vec4 b4[]; };
#define LD_b4(i) b4[i]
#endif
#ifdef VKCONVT_F16
layout(std430, binding = 2) writeonly buffer BufC { uvec2 c4_h[]; };   // (ks, batch, M, ldc); 4 halves per uvec2
#else
layout(std430, binding = 2) writeonly buffer BufC { float c[]; };      // (ks, batch, M, ldc)
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

shared float As[BK * BMP];
shared vec4 Bs[BK * BN4];

void group(uvec3 G) {
    const uint tx = gl_LocalInvocationID.x;
    const uint ty = gl_LocalInvocationID.y;
    const uint tid = ty * WG_X + tx;
    const uint n0 = (G.x) * BN;
    const uint m0 = (G.y) * BM;
    const uint nbatch = pc.grid_z / KS;
    const uint batch = G.z % nbatch;           // G.z = slice * nbatch + batch
    if (m0 >= pc.M || n0 >= pc.N) return;     // uniform over the workgroup
    // this workgroup's rows of the reduction: [kb, ke) (all of K unless split)
    const uint kc = KS == 1u ? pc.K : ((pc.K + KS - 1u) / KS + BK - 1u) / BK * BK;
    const uint kb = min(pc.K, (G.z / nbatch) * kc);
    const uint ke = min(pc.K, kb + kc);

    const uint a_base = (batch % pc.a_batch_mod) * pc.a_batch_stride;
    const uint b_base = batch * pc.b_batch_stride + pc.b_offset;
    const bool a_vec = (pc.lda % 4u == 0u) && (a_base % 4u == 0u);
    const bool b_vec = (pc.ldb % 4u == 0u) && (b_base % 4u == 0u);

    vec4 acc[TM][TN4];
    [[unroll]] for (uint i = 0; i < TM; ++i)
        [[unroll]] for (uint j = 0; j < TN4; ++j) acc[i][j] = vec4(0.0);

    for (uint k0 = kb; k0 < ke; k0 += BK) {
        // ---- stage A[m0 : m0+BM, k0 : k0+BK] -> As[k][m] (transposed)
        [[unroll]] for (uint e0 = 0; e0 < BM * BK4; e0 += NT) {
            const uint e = e0 + tid;
            if (BM * BK4 % NT == 0u || e < BM * BK4) {
                const uint row = e / BK4;
                const uint kq = (e % BK4) * 4u;
                const uint gm = m0 + row;
                const uint gk = k0 + kq;
                vec4 v = vec4(0.0);
                if (gm < pc.M) {
                    const uint idx = a_base + gm * pc.lda + gk;
                    if (a_vec && gk + 3u < ke) {
                        v = LD_a4(idx / 4u);
                    } else {
                        [[unroll]] for (uint q = 0; q < 4u; ++q)
                            if (gk + q < ke) v[q] = LD_a(idx + q);
                    }
                }
                [[unroll]] for (uint q = 0; q < 4u; ++q) As[(kq + q) * BMP + row] = v[q];
            }
        }
        // ---- stage B[k0 : k0+BK, n0 : n0+BN] -> Bs[k][n/4]
        [[unroll]] for (uint e0 = 0; e0 < BK * BN4; e0 += NT) {
            const uint e = e0 + tid;
            if (BK * BN4 % NT == 0u || e < BK * BN4) {
                const uint kr = e / BN4;
                const uint nq = e % BN4;
                const uint gk = k0 + kr;
                const uint gn = n0 + 4u * nq;
                vec4 v = vec4(0.0);
                if (gk < ke) {
                    const uint idx = b_base + gk * pc.ldb + gn;
                    if (b_vec && gn + 3u < pc.N) {
                        v = act_in4(LD_b4(idx / 4u));
                    } else {
                        [[unroll]] for (uint q = 0; q < 4u; ++q)
                            if (gn + q < pc.N) v[q] = act_in(LD_b(idx + q));
                    }
                }
                Bs[kr * BN4 + nq] = v;
            }
        }
        barrier();

        // ---- BK rank-1 updates of the TM x TN register tile from shared memory
        [[unroll]] for (uint kk = 0; kk < BK; ++kk) {
            float av[TM];
            vec4 bv[TN4];
            [[unroll]] for (uint i = 0; i < TM; ++i) av[i] = As[kk * BMP + ty + i * WG_Y];
            [[unroll]] for (uint j = 0; j < TN4; ++j) bv[j] = Bs[kk * BN4 + tx + j * WG_X];
            [[unroll]] for (uint i = 0; i < TM; ++i)
                [[unroll]] for (uint j = 0; j < TN4; ++j) acc[i][j] = fma(vec4(av[i]), bv[j], acc[i][j]);
        }
        barrier();
    }

    // ---- store: consecutive lanes write consecutive vec4 of a row of C
    const uint c_base = G.z * pc.c_batch_stride;      // slice * nbatch + batch
#ifndef VKCONVT_F16
    const bool c_vec = (pc.ldc % 4u == 0u) && (c_base % 4u == 0u);
#endif
    [[unroll]] for (uint i = 0; i < TM; ++i) {
        const uint gm = m0 + ty + i * WG_Y;
        if (gm < pc.M) {
            [[unroll]] for (uint j = 0; j < TN4; ++j) {
                const uint gn = n0 + 4u * (tx + j * WG_X);
                const uint idx = c_base + gm * pc.ldc + gn;
#ifdef VKCONVT_F16
                // ldc and c_batch_stride are multiples of 4 (align): past N is row padding
                if (gn < pc.N) c4_h[idx / 4u] = pack4(acc[i][j]);
#else
                if (c_vec && gn + 3u < pc.N) {
                    c4[idx / 4u] = acc[i][j];
                } else {
                    [[unroll]] for (uint q = 0; q < 4u; ++q)
                        if (gn + q < pc.N) c[idx + q] = acc[i][j][q];
                }
#endif
            }
        }
    }
}

VKCONVT_MAIN
