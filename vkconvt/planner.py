"""algorithm="auto", the workspace budget, chunking and explain().

    plan(x_shape, weight_shape, stride=1, ..., algorithm="auto", backend=None, device=None,
         max_workspace_bytes=None)            -> ConvPlan (algorithm, chunking, bytes, predicted times, reason)
    workspace_bytes(x_shape, weight_shape, ...) -> {"direct": 0, "gemm": bytes}, no device needed
    set_max_workspace_bytes(n)                 global budget (None: back to VKCONVT_MAX_WORKSPACE / device default)

The budget for a call: the call's max_workspace_bytes, else set_max_workspace_bytes(), else
VKCONVT_MAX_WORKSPACE, else a quarter of the device's largest device-local memory heap.
"""
import collections
import os
import threading
from dataclasses import dataclass, field
from typing import Dict, Optional

from . import backends, costmodel, env
from .backends import vulkan
from .errors import WorkspaceTooSmall
from .params import ConvParams, check_algorithm, params_from_shapes

_global_budget = None
# auto picks gemm only when it is predicted at least this much faster than the alternatives: direct
# needs no workspace, and on lavapipe the two are often within the model's error of each other.
GEMM_MARGIN = 0.10


def set_max_workspace_bytes(nbytes):
    """Set the process-wide workspace budget (bytes; None restores the default)."""
    global _global_budget
    if nbytes is not None:
        nbytes = _check_budget(nbytes)
    _global_budget = nbytes


def _check_budget(nbytes, name="max_workspace_bytes"):
    if isinstance(nbytes, str):
        return env.parse_bytes(nbytes, name)
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) and not hasattr(nbytes, "__index__"):
        raise TypeError(f"{name} must be an int number of bytes, got {nbytes!r}")
    nbytes = int(nbytes)
    if nbytes <= 0:
        raise ValueError(f"{name} must be positive, got {nbytes}")
    return nbytes


def resolve_budget(max_workspace_bytes=None, info=None):
    if max_workspace_bytes is not None:
        return _check_budget(max_workspace_bytes)
    if _global_budget is not None:
        return _global_budget
    from_env = env.max_workspace()
    if from_env is not None:
        return from_env
    if info is not None and info.device_local_bytes:
        return info.device_local_bytes // 4
    return 1 << 30


@dataclass
class ConvPlan:
    params: ConvParams
    backend: str
    device: Optional[str]
    requested: str
    algorithm: str
    max_workspace_bytes: int
    workspace_bytes: Dict[str, int]            # allocated under the budget, per algorithm
    unchunked_workspace_bytes: Dict[str, int]  # without a budget
    chunking: Dict[str, dict]                  # per algorithm: pieces, batch per piece, length chunk, dispatches
    predicted_s: Dict[str, float]              # per candidate ("direct", "gemm", "numpy")
    reason: str
    model_source: str = ""
    infeasible: Dict[str, str] = field(default_factory=dict)
    auto_backend: bool = False

    @property
    def col_cap(self):
        return self.max_workspace_bytes

    def explain(self):
        p = self.params
        lines = [f"conv_transpose1d {p.tag()}  ->  out ({p.n}, {p.c_out}, {p.l_out}), {p.flops / 1e6:.1f} MFLOP",
                 f"backend {self.backend}" + (" (chosen by backend='auto')" if self.auto_backend else "")
                 + (f"; Vulkan device {self.device}" if self.device else "")
                 + f"; workspace budget {_fmt_bytes(self.max_workspace_bytes)}",
                 f"{'candidate':10s} {'predicted':>11s} {'workspace':>11s} {'unchunked':>11s}  chunking"]
        for name in sorted(set(self.predicted_s) | set(self.infeasible)):
            if name in self.infeasible:
                lines.append(f"{name:10s} {'-':>11s} {'':>11s} {'':>11s}  cannot run: {self.infeasible[name]}")
                continue
            ch = self.chunking.get(name, {})
            chs = ", ".join(f"{k} {v}" for k, v in ch.items())
            lines.append(f"{name:10s} {self.predicted_s[name] * 1e3:9.2f}ms {_fmt_bytes(self.workspace_bytes.get(name, 0)):>11s} "
                         f"{_fmt_bytes(self.unchunked_workspace_bytes.get(name, 0)):>11s}  {chs}")
        how = "requested" if self.requested != "auto" else "auto"
        lines.append(f"chosen: {self.backend} {self.algorithm} ({how}): {self.reason}")
        if self.model_source:
            lines.append(f"cost model: {self.model_source}")
        return "\n".join(lines)

    __str__ = explain


def _fmt_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def workspace_bytes(x_shape, weight_shape, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
                    max_workspace_bytes=None):
    """Extra device memory of each algorithm, no device needed: {"direct": 0, "gemm": bytes}. With a
    budget, the gemm figure is its column buffer once chunked to fit the budget."""
    p, _ = params_from_shapes(x_shape, weight_shape, stride, padding, output_padding, groups, dilation)
    full = p.gemm_column_bytes()
    if max_workspace_bytes is None:
        return {"direct": 0, "gemm": full}
    budget = _check_budget(max_workspace_bytes)
    # The column buffer's size does not depend on tile sizes: any device type's defaults will do.
    sched = vulkan.schedule_conv(p, "gemm", budget, budget, vulkan.DEFAULT_TUNING["gpu"])
    return {"direct": 0, "gemm": 4 * sched.col_floats}


def _vulkan_candidates(p, be, budget, requested):
    info = be.device
    coef_data, src = costmodel.load(info)
    out = {}
    for algo in ("direct", "gemm"):
        if requested not in ("auto", algo):
            continue
        try:
            feats, sched = costmodel.vulkan_features(p, algo, be.max_buffer_bytes, budget, be.tuning, be.max_groups)
        except WorkspaceTooSmall as exc:
            out[algo] = exc
            continue
        nd = sum(len(d) for d in sched.dispatches)
        out[algo] = (costmodel.predict(coef_data["vulkan"], feats), 4 * sched.col_floats,
                     {"pieces": len(sched.pieces), "batch/piece": sched.pieces[0].n1 - sched.pieces[0].n0,
                      "length chunk": sched.lchunk or "-", "dispatches": nd})
    return out, coef_data, src


_plans = collections.OrderedDict()
_plans_lock = threading.Lock()


def make_plan(p, algorithm="auto", backend=None, device=None, max_workspace_bytes=None):
    """The ConvPlan for ConvParams p (see module doc); cached, since every call asks for one."""
    check_algorithm(algorithm)
    # Check what the key is made of first, so a bad argument gets its own clear message.
    if backend != "auto":
        backends.resolve_name(backend)
    if max_workspace_bytes is not None:
        max_workspace_bytes = _check_budget(max_workspace_bytes)
    key = (p, algorithm, backend, env.default_backend(), max_workspace_bytes, _global_budget,
           os.environ.get("VKCONVT_MAX_WORKSPACE"))
    if backend != "numpy" and backends.vulkan_reason() is None:
        be = backends.get("vulkan", device=device)
        key += (be.device.index, be.max_buffer_bytes, be.max_groups, tuple(sorted(be.tuning.items())),
                id(costmodel.load(be.device)[0]))
    with _plans_lock:
        hit = _plans.get(key)
        if hit is not None:
            _plans.move_to_end(key)
            return hit
    plan = _make_plan(p, algorithm, backend, device, max_workspace_bytes)
    with _plans_lock:
        _plans[key] = plan
        if len(_plans) > 512:
            _plans.popitem(last=False)
    return plan


def _make_plan(p, algorithm, backend, device, max_workspace_bytes):
    want_auto_backend = backend == "auto"
    name = "vulkan" if want_auto_backend else backends.resolve_name(backend)
    if want_auto_backend and backends.vulkan_reason() is not None:
        name = "numpy"
    unchunked = {"direct": 0, "gemm": p.gemm_column_bytes()}
    if name == "numpy":
        algo = "direct" if algorithm == "auto" else algorithm
        why = ("the NumPy backend's direct form needs no workspace" if algorithm == "auto"
               else "requested") + ("; no Vulkan device here" if want_auto_backend else "")
        return ConvPlan(p, "numpy", None, algorithm, algo, resolve_budget(max_workspace_bytes),
                        {"direct": 0, "gemm": p.gemm_column_bytes()}, unchunked, {}, {}, why,
                        auto_backend=want_auto_backend)
    be = backends.get(name, device=device)
    budget = resolve_budget(max_workspace_bytes, be.device)
    cands, coef_data, src = _vulkan_candidates(p, be, budget, algorithm)
    predicted, ws, chunking, infeasible = {}, {}, {}, {}
    for algo, val in cands.items():
        if isinstance(val, Exception):
            infeasible[algo] = str(val)
        else:
            predicted[algo], ws[algo], chunking[algo] = val
    if want_auto_backend and algorithm in ("auto", "direct"):
        predicted["numpy"] = costmodel.predict(coef_data.get("numpy", {}), costmodel.numpy_features(p))
    if algorithm != "auto":
        if algorithm in infeasible:
            raise WorkspaceTooSmall(infeasible[algorithm], p.k * 4, budget)
        choice, reason = algorithm, "requested"
        if want_auto_backend and predicted.get("numpy", float("inf")) < predicted[algorithm]:
            choice, reason = "numpy", f"numpy backend predicted faster ({predicted['numpy'] * 1e3:.2f} ms vs " \
                                      f"{predicted[algorithm] * 1e3:.2f} ms)"
    else:
        # gemm must be predicted clearly faster to be worth its workspace (and the model's error)
        rank = {k: v * (1 + GEMM_MARGIN) if k == "gemm" else v for k, v in predicted.items()}
        choice = min(rank, key=rank.get)
        others = [f"{k} {v * 1e3:.2f} ms" for k, v in sorted(predicted.items(), key=lambda kv: kv[1]) if k != choice]
        if not others:
            reason = f"the only algorithm that fits ({'; '.join(infeasible.values())})"
        elif min(predicted, key=predicted.get) == choice:
            reason = f"predicted {predicted[choice] * 1e3:.2f} ms, fastest (vs {', '.join(others)})"
        else:
            reason = (f"predicted {predicted[choice] * 1e3:.2f} ms; gemm's {predicted['gemm'] * 1e3:.2f} ms is within "
                      f"the {GEMM_MARGIN:.0%} margin that would justify its workspace")
        if choice == "gemm" and ws["gemm"] < unchunked["gemm"]:
            reason += f"; column buffer chunked to fit the {_fmt_bytes(budget)} budget"
    plan = ConvPlan(p, "numpy" if choice == "numpy" else name, be.device.describe(), algorithm,
                    "direct" if choice == "numpy" else choice, budget, ws, unchunked, chunking, predicted, reason,
                    model_source=src, infeasible=infeasible, auto_backend=want_auto_backend)
    return plan


def plan(x_shape, weight_shape, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *, bias=False,
         algorithm="auto", backend=None, device=None, max_workspace_bytes=None):
    """Plan a conv_transpose1d call from shapes alone: see ConvPlan.explain()."""
    check_algorithm(algorithm)
    p, _ = params_from_shapes(x_shape, weight_shape, stride, padding, output_padding, groups, dilation, bias)
    return make_plan(p, algorithm, backend, device, max_workspace_bytes)
