// The input activation (vkconvt/activations.py), applied to x as it is loaded: push fields
// in_act (0 none, 1 leaky_relu) and in_slope. Included after the Push block.
float act_in(float v) { return (pc.in_act != 0u && v < 0.0) ? v * pc.in_slope : v; }
vec4 act_in4(vec4 v) { return pc.in_act != 0u ? mix(v, v * pc.in_slope, lessThan(v, vec4(0.0))) : v; }
