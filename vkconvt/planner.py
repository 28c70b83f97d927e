"""algorithm="auto", the workspace budget, the schedule a call will run, and explain().

    plan(x_shape, weight_shape, stride=1, ..., algorithm="auto", backend=None, device=None,
         max_workspace_bytes=None)            -> ConvPlan (algorithm, schedule, bytes, predicted times, reason)
    workspace_bytes(x_shape, weight_shape, ...) -> {"direct": 0, "gemm": bytes}, no device needed
    set_max_workspace_bytes(n)                 global budget (None: back to VKCONVT_MAX_WORKSPACE / device default)

A plan is computed once (and cached): it prices the candidates from their classes of pieces,
then computes the complete schedule of the chosen algorithm, which the backend executes as is;
`explain()` shows exactly what will run. The budget for a call: the call's max_workspace_bytes,
else set_max_workspace_bytes(), else VKCONVT_MAX_WORKSPACE, else a quarter of the device's largest
device-local memory heap.
"""
import collections
import dataclasses
import threading
from dataclasses import dataclass, field
from typing import Dict, Optional

from . import backends, costmodel, env, kernels, schedule
from .errors import DeviceOutOfMemory, WorkspaceTooSmall
from .params import FLOAT_BYTES, ConvParams, check_algorithm, check_storage, params_from_shapes

_global_budget = None
# auto picks gemm only when it is predicted at least this much faster than the alternatives: direct
# needs no workspace, and on lavapipe the two are often within the model's error of each other.
GEMM_MARGIN = 0.10


def set_max_workspace_bytes(nbytes):
    """Set the process-wide workspace budget (bytes; None restores the default)."""
    global _global_budget
    _global_budget = None if nbytes is None else check_budget(nbytes)
    env.bump_generation()


def check_budget(nbytes, name="max_workspace_bytes"):
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
        return check_budget(max_workspace_bytes)
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
    chunking: Dict[str, dict]                  # per algorithm: pieces, batch per piece, chunks, dispatches, kernels
    predicted_s: Dict[str, float]              # per candidate ("direct", "gemm", "numpy")
    reason: str
    model_source: str = ""
    infeasible: Dict[str, str] = field(default_factory=dict)
    auto_backend: bool = False
    schedule: object = None                    # what the Vulkan backend runs (None on NumPy)
    limits: object = None
    choice: dict = None
    _needs_finite: Optional[bool] = None
    _safe: object = None

    @property
    def needs_finite(self):
        """Whether the schedule runs a kernel that is exact only for finite weights (its safe spec
        differs): the backend then checks the weights and takes safe_schedule() when one is not."""
        if self._needs_finite is None:
            self._needs_finite = self.schedule is not None and any(
                kernels.KERNELS[d.kernel].safe is not None and kernels.KERNELS[d.kernel].safe(d.spec) != d.spec
                for st in self.schedule.steps for d in st.dispatches)
        return self._needs_finite

    def safe_schedule(self):
        if self._safe is None:
            self._safe = schedule.schedule_conv(self.params, self.algorithm, self.limits, self.max_workspace_bytes,
                                                self.choice, safe=True)
        return self._safe

    def attempts(self, safe=False):
        """The schedules to try in turn: the planned one (its safe twin for non-finite weights);
        with algorithm='auto', out of device memory, gemm with ever smaller column chunks and then
        direct (no workspace)."""
        yield self.safe_schedule() if safe else self.schedule
        if self.requested != "auto":
            return
        p = self.params
        cap = self.max_workspace_bytes // 4
        while self.algorithm == "gemm" and cap >= FLOAT_BYTES * p.k * 64:   # 64 columns at least
            yield schedule.schedule_conv(p, "gemm", self.limits, cap, self.choice, safe=safe)
            cap //= 4
        if self.algorithm != "direct":
            yield schedule.schedule_conv(p, "direct", self.limits, self.max_workspace_bytes, self.choice, safe=safe)

    def out_of_memory(self, last):
        p = self.params
        if self.requested != "auto":
            msg = (f"conv_transpose1d {p.tag()}: algorithm {self.algorithm!r} ran out of device memory "
                   f"(workspace budget {self.max_workspace_bytes} bytes; {last})")
        else:
            msg = f"conv_transpose1d {p.tag()}: out of device memory even with the direct algorithm ({last})"
        return DeviceOutOfMemory(msg, getattr(last, "needed_bytes", None), self.max_workspace_bytes)

    def explain(self):
        p = self.params
        lines = [f"conv_transpose1d {p.tag()}  ->  out ({p.n}, {p.c_out}, {p.l_out}), {p.flops / 1e6:.1f} MFLOP",
                 f"backend {self.backend}" + (" (chosen by backend='auto')" if self.auto_backend else "")
                 + (f"; Vulkan device {self.device}" if self.device else "")
                 + f"; workspace budget {fmt_bytes(self.max_workspace_bytes)}"
                 + ("; float16 storage (x, weights, columns; float32 arithmetic and output)"
                    if p.storage == "float16" else ""),
                 f"{'candidate':10s} {'predicted':>11s} {'workspace':>11s} {'unchunked':>11s}  chunking"]
        for name in sorted(set(self.predicted_s) | set(self.infeasible)):
            if name in self.infeasible:
                lines.append(f"{name:10s} {'-':>11s} {'':>11s} {'':>11s}  cannot run: {self.infeasible[name]}")
                continue
            chs = ", ".join(f"{k} {v}" for k, v in self.chunking.get(name, {}).items())
            lines.append(f"{name:10s} {self.predicted_s[name] * 1e3:9.2f}ms "
                         f"{fmt_bytes(self.workspace_bytes.get(name, 0)):>11s} "
                         f"{fmt_bytes(self.unchunked_workspace_bytes.get(name, 0)):>11s}  {chs}")
        how = "requested" if self.requested != "auto" else "auto"
        lines.append(f"chosen: {self.backend} {self.algorithm} ({how}): {self.reason}")
        if self.schedule is not None:
            used = {}
            for st in self.schedule.steps:
                for d in st.dispatches:
                    used.setdefault(d.kernel, set()).add(tuple(d.spec))
            kinds = "; ".join(f"{name} {', '.join(str(sp) for sp in sorted(specs))}" for name, specs in used.items())
            lines.append(f"kernels: {kinds or 'none (no input reaches the output)'}"
                         + ("; exact variants taken for non-finite weights" if self.needs_finite else ""))
            names = {"x": "x", "w": "weights", "col": "columns", "out": "output", "out16": "float16 output"}
            lines.append("device buffers per piece: " + ", ".join(
                f"{names[k]} {fmt_bytes(v)}" for k, v in self.schedule.buffer_bytes().items() if v))
        if self.model_source:
            lines.append(f"cost model: {self.model_source}")
        return "\n".join(lines)

    __str__ = explain


def fmt_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def workspace_bytes(x_shape, weight_shape, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
                    max_workspace_bytes=None, storage="float32"):
    """Extra device memory of each algorithm, no device needed: {"direct": 0, "gemm": bytes}. With a
    budget, the gemm figure is its column buffer once chunked to fit the budget; storage="float16"
    halves it (columns stored as halves)."""
    p, _ = params_from_shapes(x_shape, weight_shape, stride, padding, output_padding, groups, dilation)
    p = dataclasses.replace(p, storage=check_storage(storage))
    full = p.gemm_column_bytes()
    if max_workspace_bytes is None:
        return {"direct": 0, "gemm": full}
    budget = check_budget(max_workspace_bytes)
    # The column buffer's size does not depend on kernels or tile sizes: any choice will do.
    classes = schedule.schedule_conv(p, "gemm", schedule.Limits(budget), budget, kernels.default_choice("gpu"),
                                     complete=False)
    return {"direct": 0, "gemm": classes.workspace_bytes}


_plans = collections.OrderedDict()
_plans_lock = threading.Lock()


def make_plan(p, algorithm="auto", backend=None, device=None, max_workspace_bytes=None):
    """The ConvPlan for ConvParams p (see module doc); cached, since every call asks for one."""
    check_algorithm(algorithm)
    # Check what the key is made of first, so a bad argument gets its own clear message.
    wanted = backends.requested(backend)
    if max_workspace_bytes is not None:
        max_workspace_bytes = check_budget(max_workspace_bytes)
    key = (p, algorithm, wanted, max_workspace_bytes, _global_budget, env.max_workspace_text())
    be = None
    if backends.resolve_name(wanted) == "vulkan":
        be = backends.get("vulkan", device=device)
        key += (be.device.index, be.max_buffer_bytes, tuple(sorted(be.choice.items())),
                id(costmodel.load(be.device)[0]))
    with _plans_lock:
        hit = _plans.get(key)
        if hit is not None:
            _plans.move_to_end(key)
            return hit
    plan = _make_plan(p, algorithm, wanted, be, max_workspace_bytes)
    with _plans_lock:
        _plans[key] = plan
        if len(_plans) > 512:
            _plans.popitem(last=False)
    return plan


def _numpy_plan(p, algorithm, auto_backend, budget):
    algo = "direct" if algorithm == "auto" else algorithm
    why = ("the NumPy backend's direct form needs no workspace" if algorithm == "auto"
           else "requested") + ("; no Vulkan device here" if auto_backend else "")
    unchunked = {"direct": 0, "gemm": p.gemm_column_bytes(4)}     # NumPy's columns are float32
    return ConvPlan(p, "numpy", None, algorithm, algo, budget, dict(unchunked), unchunked, {}, {}, why,
                    auto_backend=auto_backend)


def _make_plan(p, algorithm, wanted, be, max_workspace_bytes):
    auto_backend = wanted == "auto"
    if be is None:
        return _numpy_plan(p, algorithm, auto_backend, resolve_budget(max_workspace_bytes))
    budget = resolve_budget(max_workspace_bytes, be.device)
    limits = be.limits()
    coef_data, src = costmodel.load(be.device)
    predicted, ws, chunking, infeasible, scheds = {}, {}, {}, {}, {}
    for algo in ("direct", "gemm"):
        if algorithm not in ("auto", algo):
            continue
        try:
            # A requested algorithm is scheduled once, completely; auto prices both candidates
            # from their classes of pieces and schedules the winner below.
            s = schedule.schedule_conv(p, algo, limits, budget, be.choice, complete=algorithm != "auto")
        except WorkspaceTooSmall as exc:
            infeasible[algo] = str(exc)
            continue
        scheds[algo] = s
        predicted[algo] = costmodel.predict(coef_data["vulkan"], costmodel.features(s))
        ws[algo] = s.workspace_bytes
        chunking[algo] = s.summary()
    if auto_backend and algorithm in ("auto", "direct"):
        predicted["numpy"] = costmodel.predict(coef_data.get("numpy", {}), costmodel.numpy_features(p))
    if algorithm != "auto":
        if algorithm in infeasible:
            raise WorkspaceTooSmall(infeasible[algorithm], p.k * p.elem_bytes, budget)
        choice, reason = algorithm, "requested"
        if auto_backend and predicted.get("numpy", float("inf")) < predicted[algorithm]:
            choice = "numpy"
            reason = (f"numpy backend predicted faster ({predicted['numpy'] * 1e3:.2f} ms vs "
                      f"{predicted[algorithm] * 1e3:.2f} ms)")
    else:
        choice, reason = _choose(predicted, infeasible)
        if choice == "gemm" and ws["gemm"] < p.gemm_column_bytes():
            reason += f"; column buffer chunked to fit the {fmt_bytes(budget)} budget"
    if choice == "numpy":
        plan = _numpy_plan(p, "direct", True, budget)
        plan.predicted_s, plan.reason = predicted, reason
        return plan
    sched = scheds[choice] if scheds[choice].complete else schedule.schedule_conv(p, choice, limits, budget, be.choice)
    return ConvPlan(p, "vulkan", be.device.describe(), algorithm, choice, budget, ws,
                    {"direct": 0, "gemm": p.gemm_column_bytes()}, chunking, predicted, reason, model_source=src,
                    infeasible=infeasible, auto_backend=auto_backend, schedule=sched, limits=limits,
                    choice=dict(be.choice))


def _choose(predicted, infeasible):
    # gemm must be predicted clearly faster to be worth its workspace (and the model's error)
    rank = {k: v * (1 + GEMM_MARGIN) if k == "gemm" else v for k, v in predicted.items()}
    choice = min(rank, key=rank.get)
    others = [f"{k} {v * 1e3:.2f} ms" for k, v in sorted(predicted.items(), key=lambda kv: kv[1]) if k != choice]
    if not others:
        return choice, f"the only algorithm that fits ({'; '.join(infeasible.values())})"
    if min(predicted, key=predicted.get) == choice:
        return choice, f"predicted {predicted[choice] * 1e3:.2f} ms, fastest (vs {', '.join(others)})"
    return choice, (f"predicted {predicted[choice] * 1e3:.2f} ms; gemm's {predicted['gemm'] * 1e3:.2f} ms is within "
                    f"the {GEMM_MARGIN:.0%} margin that would justify its workspace")


def plan(x_shape, weight_shape, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *, bias=False,
         algorithm="auto", backend=None, device=None, max_workspace_bytes=None, storage="float32"):
    """Plan a conv_transpose1d call from shapes alone: see ConvPlan.explain()."""
    check_algorithm(algorithm)
    p, _ = params_from_shapes(x_shape, weight_shape, stride, padding, output_padding, groups, dilation, bias)
    p = dataclasses.replace(p, storage=check_storage(storage))
    return make_plan(p, algorithm, backend, device, max_workspace_bytes)
