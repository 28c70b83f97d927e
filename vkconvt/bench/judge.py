"""What every bench measurement shares: tolerances, the judge of a result, the record of its times."""
import numpy as np

from ..metrics import nmse

TOL = 1e-7          # normalised MSE against the NumPy backend
TOL_TF32 = 1e-5     # TF32 rounds the operands to 10 mantissa bits
MAX_RUNS = 50


def _judge(rec, out, ref, tol):
    rec["nmse"] = 0.0 if ref is None else nmse(out, ref)
    if not np.isfinite(out).all():
        rec.update(status="non-finite", error="the result has NaN or Inf")
    elif rec["nmse"] > tol:
        rec.update(status="wrong", error=f"normalised MSE {rec['nmse']:.3g} > {tol:g}")


def _fill(rec, times):
    rec.update(runs=len(times), median_s=float(np.median(times)), min_s=min(times), std_s=float(np.std(times)))
