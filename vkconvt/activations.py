"""Fused activations: what the kernel that writes the output applies to it, and what the kernels
apply to x as they load it. The same definitions serve the NumPy reference (`apply`,
`apply_input`) and the shaders (shaders/activation.glsl), so both compute one thing:

  relu        max(v, 0)
  leaky_relu  v if v >= 0 else negative_slope * v
  tanh        tanh(v)
  snake       v + sin(alpha_c * v)**2 / (alpha_c + 1e-9)                 (BigVGAN's Snake)
  snakebeta   v + sin(alpha_c * v)**2 / (beta_c + 1e-9)                  (BigVGAN's SnakeBeta)
with per-channel alpha (and beta) of shape (C_out,); alpha_logscale=True takes exp(alpha) and
exp(beta), as BigVGAN's `alpha_logscale` does. input_activation: "leaky_relu" only (HiFi-GAN's
upsampling layers follow one), with input_negative_slope.
"""
import math
import numbers
from dataclasses import dataclass

import numpy as np

NAMES = ("relu", "leaky_relu", "tanh", "snake", "snakebeta")
INPUT_NAMES = ("leaky_relu",)
CODES = {None: 0, "relu": 1, "leaky_relu": 2, "tanh": 3, "snake": 4, "snakebeta": 4}
EPS = 1e-9          # BigVGAN's no_div_by_zero


@dataclass(frozen=True)
class Epilogue:
    """What a conv's kernels apply: act (0 none, 1 relu, 2 leaky_relu, 3 tanh, 4 snake/snakebeta)
    with slope; in_act (0 none, 1 leaky_relu on x) with in_slope. Hashable: part of ConvParams."""
    act: int = 0
    slope: float = 0.0
    in_act: int = 0
    in_slope: float = 0.0

    @property
    def per_channel(self):
        """The activation reads (alpha, 1/(beta + eps)) per output channel."""
        return self.act == 4

    def tag(self):
        out = f"_a{self.act}" if self.act else ""
        return out + (f"_in{self.in_act}" if self.in_act else "")


NONE = Epilogue()


FLOAT32_MAX = float(np.finfo(np.float32).max)     # 3.4028234663852886e38


def _slope(name, value):
    """A scalar parameter as the kernels take it: a finite float32 (PyTorch refuses a float32 op's
    scalar beyond float32's range: "value cannot be converted to type float without overflow")."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if abs(float(value)) > FLOAT32_MAX:
        raise ValueError(f"{name}={value!r} cannot be converted to float32 without overflow "
                         f"(|{name}| must be <= {FLOAT32_MAX!r})")
    return float(np.float32(value))


def _channels(name, value, c_out):
    arr = np.asarray(value, dtype=np.float64) if value is not None else None
    if arr is None or arr.shape != (c_out,):
        got = "nothing" if arr is None else f"shape {arr.shape}"
        raise ValueError(f"{name} must have shape (C_out,) = ({c_out},); got {got}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite")
    if (np.abs(arr) > FLOAT32_MAX).any():
        raise ValueError(f"{name} must be finite in float32: |{name}| <= {FLOAT32_MAX!r}, got "
                         f"{float(arr[np.abs(arr) > FLOAT32_MAX][0])!r}")
    return arr


def check(c_out, activation=None, negative_slope=0.01, alpha=None, beta=None, alpha_logscale=False,
          input_activation=None, input_negative_slope=0.01):
    """(Epilogue, per-channel parameters (2, C_out) float32 [alpha, 1/(beta + eps)] or None), or a
    ValueError naming the argument."""
    if activation is not None and activation not in NAMES:
        raise ValueError(f"activation must be one of {', '.join(NAMES)} or None; got {activation!r}")
    if input_activation is not None and input_activation not in INPUT_NAMES:
        raise ValueError(f"input_activation must be one of {', '.join(INPUT_NAMES)} or None; got {input_activation!r}")
    slope = _slope("negative_slope", negative_slope) if activation == "leaky_relu" else 0.0
    in_slope = _slope("input_negative_slope", input_negative_slope) if input_activation else 0.0
    epi = Epilogue(CODES[activation], slope, 1 if input_activation else 0, in_slope)
    if activation not in ("snake", "snakebeta"):
        for name, value in (("alpha", alpha), ("beta", beta)):
            if value is not None:
                raise ValueError(f"{name} is only used by activation='snake' or 'snakebeta'; got activation={activation!r}")
        return epi, None
    a = _channels("alpha", alpha, c_out)
    b = _channels("beta", beta, c_out) if activation == "snakebeta" else a
    if activation == "snake" and beta is not None:
        raise ValueError("beta is only used by activation='snakebeta'")
    with np.errstate(over="ignore", divide="ignore"):
        if alpha_logscale:
            a, b = np.exp(a), np.exp(b)
        coef = np.stack([a, 1.0 / (b + EPS)])
    bad = ~(np.abs(coef) <= FLOAT32_MAX)
    if bad.any():
        which = ("exp(alpha)" if alpha_logscale else "alpha") if bad[0].any() else (
            "1 / (" + ("exp(beta)" if alpha_logscale else "beta" if activation == "snakebeta" else "alpha") + " + 1e-9)")
        raise ValueError(f"{which} is not a finite float32 for channel {int(np.argmax(bad[0] | bad[1]))} "
                         f"(|value| must be <= {FLOAT32_MAX!r})")
    return epi, coef.astype(np.float32)


def apply(out, epi, params, channel_axis=1):
    """The output activation, in place on a float32 array (N, C, L)."""
    if epi.act == 1:
        np.maximum(out, 0, out=out)
    elif epi.act == 2:
        np.multiply(out, np.float32(epi.slope), out=out, where=out < 0)
    elif epi.act == 3:
        np.tanh(out, out=out)
    elif epi.act == 4:
        shape = [1] * out.ndim
        shape[channel_axis] = -1
        alpha, inv = params[0].reshape(shape), params[1].reshape(shape)
        out += np.square(np.sin(alpha * out)) * inv
    return out


def apply_input(x, epi):
    """The input activation on a copy of x (leaky_relu with in_slope)."""
    if epi.in_act == 0:
        return x
    return np.where(x < 0, x * np.float32(epi.in_slope), x).astype(x.dtype, copy=False)
