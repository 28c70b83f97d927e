// Shared by every vkconvt shader. All push constants are 32-bit, in the order of the host's kernel
// table (vkconvt/kernels.py: KERNELS[<name>].push); `int` fields are two's complement.
//
// Grid-stride dispatch: the host dispatches a fixed 1-D grid of workgroups per pipeline (so one
// pipeline serves every problem size) and passes the logical grid (grid_x, grid_y, grid_z) in the
// push constants; each workgroup walks the logical workgroups it owns. Shaders implement
// `void group(uvec3 G)` for one logical workgroup G and end with VKCONVT_MAIN.
#define VKCONVT_MAIN                                                                          \
    void main() {                                                                             \
        const uint nxy = pc.grid_x * pc.grid_y;                                               \
        const uint total = nxy * pc.grid_z;                                                   \
        for (uint it = gl_WorkGroupID.x; it < total; it += gl_NumWorkGroups.x)                \
            group(uvec3(it % pc.grid_x, (it / pc.grid_x) % pc.grid_y, it / nxy));             \
    }

// Floor division and a non-negative remainder for signed ints (GLSL's / and % truncate).
int floordiv(int a, int b) { return (a >= 0) ? a / b : -((-a + b - 1) / b); }
int ceildiv(int a, int b) { return -floordiv(-a, b); }
int posmod(int a, int b) { return a - floordiv(a, b) * b; }

// (a * b) mod m without 64-bit arithmetic, for m < 2**31 (double and add).
uint mulmod(uint a, uint b, uint m) {
    uint r = 0u;
    a %= m;
    b %= m;
    while (b != 0u) {
        if ((b & 1u) != 0u) { r += a; if (r >= m) r -= m; }
        a += a;
        if (a >= m) a -= m;
        b >>= 1;
    }
    return r;
}

// float16 storage (the *_f16 kernels, built with -DVKCONVT_F16=1): two halves per 32-bit word,
// unpacked to float32 on load (arithmetic stays float32).
vec4 h4(uvec2 u) { return vec4(unpackHalf2x16(u.x), unpackHalf2x16(u.y)); }
uvec2 pack4(vec4 v) { return uvec2(packHalf2x16(v.xy), packHalf2x16(v.zw)); }
