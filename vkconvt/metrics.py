"""How results are compared everywhere (benchmark, demo, tests): the normalised mean squared error."""
import math

import numpy as np


def nmse(out, ref):
    """mean((out - ref)^2) / mean(ref^2) in float64 (0 when both are zero, inf when only ref is).
    Shapes must agree; check NaN/inf separately (they make this NaN)."""
    out = np.asarray(out, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if out.shape != ref.shape:
        raise ValueError(f"output shape {out.shape} differs from the reference's {ref.shape}")
    d = out - ref
    num, den = float(np.mean(d * d)), float(np.mean(ref * ref))
    return num / den if den > 0 else (0.0 if num == 0 else math.inf)
