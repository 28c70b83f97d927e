// Included after common.glsl by the shaders whose Push block has the phase fields
// s, d, pad, kp, gdiv, dinv (vkconvt/kernels.py: PHASE_PUSH).

// Taps of one output phase. Outputs i with (i + pad) mod s == r are reached by the taps q with
// q*d = r (mod s): they exist iff gdiv = gcd(s, d) divides r, the first is
// q_r = (r / gdiv) * dinv mod kp (dinv: the inverse of d/gdiv modulo kp = s/gdiv, from the host),
// and they are kp apart. Tap q_r + u*kp reads input m = J - c_r - u*P for the output with
// (i + pad - r) / s = J, where c_r = (q_r*d - r) / s and P = d / gdiv.
// Returns false when no tap has this phase; else q_r, c_r and the number of taps nu.
bool phase_taps(int r, uint K, out uint q_r, out int c_r, out int nu) {
    q_r = 0u; c_r = 0; nu = 0;
    if (uint(r) % pc.gdiv != 0u) return false;
    q_r = pc.kp > 1u ? mulmod(uint(r) / pc.gdiv, pc.dinv, pc.kp) : 0u;
    if (q_r >= K) return false;
    c_r = int((q_r * pc.d - uint(r)) / pc.s);
    nu = int((K - q_r + pc.kp - 1u) / pc.kp);
    return true;
}
