#version 450
#extension GL_GOOGLE_include_directive : require
// kernel "matmul": C[b] = A[b % a_batch_mod] · B[b], float32, row-major, any M, N, K.
// Register blocked: each invocation computes a TM x TN tile of C, so every loaded element of A
// feeds TN multiply-adds and every element of B feeds TM (what llvmpipe rewards).
// Out-of-range rows/columns load a clamped (valid) address and are not stored.

layout(local_size_x_id = 0, local_size_y_id = 1, local_size_z = 1) in;
layout(constant_id = 2) const uint TM = 4;   // rows of C per invocation
layout(constant_id = 3) const uint TN = 4;   // columns of C per invocation

#ifdef VKCONVT_F16
layout(std430, binding = 0) readonly buffer BufA { uint a_h[]; };  // (a_batch_mod, M, lda)
#define LD_a(i) unpackHalf2x16(a_h[(i) >> 1])[(i) & 1u]
#else
layout(std430, binding = 0) readonly buffer BufA { float a[]; };  // (a_batch_mod, M, lda)
#define LD_a(i) a[i]
#endif
#ifdef VKCONVT_F16
layout(std430, binding = 1) readonly buffer BufB { uint b_h[]; };  // (batch, K, ldb); columns from b_offset
#define LD_b(i) unpackHalf2x16(b_h[(i) >> 1])[(i) & 1u]
#else
layout(std430, binding = 1) readonly buffer BufB { float b[]; };  // (batch, K, ldb); columns from b_offset
#define LD_b(i) b[i]
#endif
#ifdef VKCONVT_F16
layout(std430, binding = 2) writeonly buffer BufC { uint c_h[]; }; // (batch, M, ldc); halves in pairs
#else
layout(std430, binding = 2) writeonly buffer BufC { float c[]; }; // (batch, M, ldc)
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

void group(uvec3 G) {
    const uint col0 = (G.x * gl_WorkGroupSize.x + gl_LocalInvocationID.x) * TN;
    const uint row0 = (G.y * gl_WorkGroupSize.y + gl_LocalInvocationID.y) * TM;
    const uint batch = G.z;
    if (row0 >= pc.M || col0 >= pc.N) return;

    const uint a_base = (batch % pc.a_batch_mod) * pc.a_batch_stride;
    const uint b_base = batch * pc.b_batch_stride + pc.b_offset;

    uint arow[TM];
    for (uint i = 0; i < TM; ++i) arow[i] = a_base + min(row0 + i, pc.M - 1) * pc.lda;
    uint bcol[TN];
    for (uint j = 0; j < TN; ++j) bcol[j] = b_base + min(col0 + j, pc.N - 1);

    float acc[TM][TN];
    for (uint i = 0; i < TM; ++i)
        for (uint j = 0; j < TN; ++j) acc[i][j] = 0.0;

    for (uint k = 0; k < pc.K; ++k) {
        float av[TM];
        for (uint i = 0; i < TM; ++i) av[i] = LD_a(arow[i] + k);
        const uint brow = k * pc.ldb;
        float bv[TN];
        for (uint j = 0; j < TN; ++j) bv[j] = act_in(LD_b(bcol[j] + brow));
        for (uint i = 0; i < TM; ++i)
            for (uint j = 0; j < TN; ++j) acc[i][j] = fma(av[i], bv[j], acc[i][j]);
    }

    const uint c_base = batch * pc.c_batch_stride;
    for (uint i = 0; i < TM; ++i) {
        if (row0 + i >= pc.M) break;
#ifdef VKCONVT_F16
        // two columns per 32-bit word: TN, ldc and c_batch_stride are even (kernels/__init__.py
        // twins), so no word is shared by two invocations; the odd column past N is ldc padding
        for (uint j = 0; j < TN; j += 2) {
            const float hi = j + 1u < TN ? acc[i][j + 1u] : 0.0;
            if (col0 + j < pc.N) c_h[(c_base + (row0 + i) * pc.ldc + col0 + j) >> 1] = packHalf2x16(vec2(acc[i][j], hi));
        }
#else
        for (uint j = 0; j < TN; ++j) {
            if (col0 + j < pc.N) c[c_base + (row0 + i) * pc.ldc + col0 + j] = acc[i][j];
        }
#endif
    }
}

VKCONVT_MAIN
