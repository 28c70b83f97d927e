// The output activation (vkconvt/activations.py), applied by the kernel that writes an output:
// push fields act (0 none, 1 relu, 2 leaky_relu, 3 tanh, 4 snake/snakebeta) and act_slope; the
// snakes read their per-channel alpha and 1/(beta + 1e-9) after the C biases of the bias buffer.
// NaN stays NaN (no max()/min(), which may drop it). Included after the bias buffer.
// act_coef loads a channel's (alpha, 1/(beta + 1e-9)) once (kernels writing many outputs of one
// channel hoist it out of their loops: a buffer load costs far more than the arithmetic on llvmpipe).
vec2 act_coef(uint c, uint C) {
    return pc.act == 4u ? vec2(bias[C + c], bias[2u * C + c]) : vec2(0.0);
}

float act_apply(float v, vec2 ab) {
    if (pc.act == 0u) return v;
    if (pc.act == 1u) return v < 0.0 ? 0.0 : v;
    if (pc.act == 2u) return v < 0.0 ? v * pc.act_slope : v;
    if (pc.act == 3u) {
        const float t = exp(-2.0 * abs(v));
        return (v < 0.0 ? -1.0 : 1.0) * (1.0 - t) / (1.0 + t);
    }
    const float sn = sin(ab.x * v);
    return v + sn * sn * ab.y;
}

float act_out(float v, uint c, uint C) { return act_apply(v, act_coef(c, C)); }
