"""Plans, generic over ops: algorithm="auto", the workspace budget, the schedule a call will run, explain().

    plan(x_shape, weight_shape, stride=1, ..., algorithm="auto", backend=None, device=None,
         max_workspace_bytes=None)            -> Plan of a conv_transpose1d call (algorithm, schedule, bytes,
                                                  predicted times, reason)
    make_plan(op, params, ...)                  -> Plan of any op (vkconvt/ops/)
    workspace_bytes(x_shape, weight_shape, ...) -> {"direct": 0, "gemm": bytes}, no device needed

A plan is computed once (and cached, keyed by value: the op's problem, the request, the budget and the
device profile, which carries every setting that matters): it prices the op's algorithms from their
classes of pieces, then computes the complete schedule of the chosen one, which the backend executes
as is; `explain()` shows exactly what will run. The planner reads an immutable device profile
(profile.py) and never touches a device. The budget for a call: the call's max_workspace_bytes, else
set_max_workspace_bytes(), else VKCONVT_MAX_WORKSPACE, else a quarter of the device's largest
device-local memory heap.
"""
import dataclasses
from dataclasses import dataclass, field
from typing import Dict, Optional

from . import backends, cache, costmodel, env, kernels, ops, profile, settings
from .errors import AlgorithmUnavailable, DeviceOutOfMemory, WorkspaceTooSmall
from .params import check_algorithm, check_storage, params_from_shapes
from .settings import check_budget, set_max_workspace_bytes  # noqa: F401  (public names)

# auto picks gemm only when it is predicted at least this much faster than the alternatives: direct
# needs no workspace, and on lavapipe the two are often within the model's error of each other.
GEMM_MARGIN = 0.10


def resolve_budget(max_workspace_bytes=None, prof=None):
    if max_workspace_bytes is not None:
        return check_budget(max_workspace_bytes)
    if settings.global_budget() is not None:
        return settings.global_budget()
    from_env = env.max_workspace()
    if from_env is not None:
        return from_env
    if prof is not None and prof.device_local_bytes:
        return prof.device_local_bytes // 4
    return 1 << 30


@dataclass
class Plan:
    op: object                                 # the ops.Op
    params: object
    backend: str
    device: Optional[str]
    requested: str
    algorithm: str
    max_workspace_bytes: int
    workspace_bytes: Dict[str, int]            # allocated under the budget, per algorithm
    unchunked_workspace_bytes: Dict[str, int]  # without a budget
    chunking: Dict[str, dict]                  # per algorithm: pieces, chunks, dispatches, submissions, kernels
    predicted_s: Dict[str, float]              # per candidate ("direct", "gemm", "numpy", ...)
    reason: str
    model_source: str = ""
    infeasible: Dict[str, str] = field(default_factory=dict)
    auto_backend: bool = False
    schedule: object = None                    # what the Vulkan backend runs (None on NumPy)
    profile: object = None                     # the DeviceProfile it was made for
    _needs_finite: Optional[bool] = None
    _safe: object = None

    @property
    def limits(self):
        return self.profile.limits if self.profile else None

    @property
    def choice(self):
        return self.profile.choice if self.profile else None

    @property
    def needs_finite(self):
        """Whether the schedule runs a kernel that is exact only for finite weights (its safe spec
        differs): the call path then checks the weights and takes safe_schedule() when one is not."""
        if self._needs_finite is None:
            self._needs_finite = self.schedule is not None and any(
                kernels.KERNELS[d.kernel].safe is not None and tuple(kernels.KERNELS[d.kernel].safe(d.spec)) != tuple(d.spec)
                for st in self.schedule.steps for d in st.dispatches)
        return self._needs_finite

    def _schedule(self, algorithm, budget, safe=False):
        return self.op.schedule(self.params, algorithm, self.limits, budget, self.choice, safe=safe)

    def safe_schedule(self):
        if self._safe is None:
            self._safe = self._schedule(self.algorithm, self.max_workspace_bytes, safe=True)
        return self._safe

    def attempts(self, safe=False):
        """The schedules to try in turn: the planned one (its safe twin for non-finite weights);
        with algorithm='auto', out of device memory: smaller workspace budgets for an algorithm
        that has a workspace (a quarter each time), then the algorithms without one."""
        yield self.safe_schedule() if safe else self.schedule
        if self.requested != "auto":
            return
        cap = self.max_workspace_bytes // 4
        for _ in range(3 if self.workspace_bytes.get(self.algorithm, 0) else 0):
            try:
                yield self._schedule(self.algorithm, cap, safe)
            except WorkspaceTooSmall:
                break
            cap //= 4
        for algo in self.op.algorithms:
            if algo != self.algorithm and not self.op.workspace(self.params).get(algo, 0):
                yield self._schedule(algo, self.max_workspace_bytes, safe)

    def out_of_memory(self, last):
        what = self.op.describe(self.params).split("  ->")[0]
        if self.requested != "auto":
            msg = (f"{what}: algorithm {self.algorithm!r} ran out of device memory "
                   f"(workspace budget {self.max_workspace_bytes} bytes; {last})")
        else:
            msg = f"{what}: out of device memory even with the algorithms that need no workspace ({last})"
        return DeviceOutOfMemory(msg, getattr(last, "needed_bytes", None), self.max_workspace_bytes)

    def explain(self):
        lines = [self.op.describe(self.params),
                 f"backend {self.backend}" + (" (chosen by backend='auto')" if self.auto_backend else "")
                 + (f"; Vulkan device {self.device}" if self.device else "")
                 + f"; workspace budget {fmt_bytes(self.max_workspace_bytes)}"
                 + ("; float16 storage (x, weights, columns; float32 arithmetic and output)"
                    if getattr(self.params, "storage", "float32") == "float16" else ""),
                 f"{'candidate':10s} {'predicted':>11s} {'workspace':>11s} {'unchunked':>11s}  chunking"]
        for name in sorted(set(self.predicted_s) | set(self.infeasible)):
            if name in self.infeasible:
                lines.append(f"{name:10s} {'-':>11s} {'':>11s} {'':>11s}  cannot run: {self.infeasible[name]}")
                continue
            chs = ", ".join(f"{k} {v}" for k, v in self.chunking.get(name, {}).items() if k != "geometry")
            lines.append(f"{name:10s} {self.predicted_s[name] * 1e3:9.2f}ms "
                         f"{fmt_bytes(self.workspace_bytes.get(name, 0)):>11s} "
                         f"{fmt_bytes(self.unchunked_workspace_bytes.get(name, 0)):>11s}  {chs}")
        how = "requested" if self.requested != "auto" else "auto"
        lines.append(f"chosen: {self.backend} {self.algorithm} ({how}): {self.reason}")
        sched = self.schedule
        if sched is not None:
            used = {}
            for st in sched.steps:
                for d in st.dispatches:
                    used.setdefault(d.kernel, set()).add(tuple(d.spec))
            kinds = "; ".join(f"{name} " + ", ".join(spec_text(name, sp) for sp in sorted(specs))
                              for name, specs in used.items())
            lines.append(f"kernels: {kinds or 'none (no input reaches the output)'}"
                         + ("; exact variants taken for non-finite weights" if self.needs_finite else ""))
            lines.append("device buffers per piece: " + ", ".join(
                f"{k} {fmt_bytes(v)}" for k, v in sched.buffer_bytes().items() if v))
            subs = sched.submissions()
            lines.append(f"queue submissions per call: {subs}" + (
                "" if subs <= 1 else f" (one per piece: the {sched.pieces} pieces share their buffers, so a piece's "
                                     "inputs are written after the previous piece's results are read)"))
        if self.profile is not None:
            lines.append(f"kernel choice and cost model: {self.model_source}"
                         + (" (tuned on this device)" if self.profile.tuned else " (shipped defaults)"))
        return "\n".join(lines)

    __str__ = explain


ConvPlan = Plan      # the public name of a conv_transpose1d plan


def spec_text(name, spec):
    """A spec as its named fields: (wg=8, to=4, ...)."""
    fields = kernels.KERNELS[name].spec
    return "(" + ", ".join(f"{f}={v}" for f, v in zip(fields, spec)) + ")"


def fmt_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def workspace_bytes(x_shape, weight_shape, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
                    max_workspace_bytes=None, storage="float32"):
    """Extra device memory of each algorithm, no device needed: {"direct": 0, "gemm": bytes}. With a
    budget, the gemm figure is its column buffer once chunked to fit the budget; storage="float16"
    halves it (columns stored as halves). This is the least gemm needs: on a GPU whose grid the
    problem cannot fill, a plan may hold split-K slices (more column buffers) where the budget has
    room for them; its `workspace_bytes` and explain() say what it holds."""
    p, _ = params_from_shapes(x_shape, weight_shape, stride, padding, output_padding, groups, dilation)
    p = dataclasses.replace(p, storage=check_storage(storage))
    op = ops.get("conv_transpose1d")
    if max_workspace_bytes is None:
        return op.workspace(p)
    budget = check_budget(max_workspace_bytes)
    # One column buffer's size does not depend on kernels or tile sizes: any device will do.
    prof = profile.for_limits("gpu", max_buffer_bytes=budget)
    classes = op.schedule(p, "gemm", prof.limits, budget, prof.choice, complete=False)
    return {"direct": 0, "gemm": classes.info["columns"]}


_plans = cache.LRU("plans", 512)


def check_request(op, algorithm):
    valid = ("auto",) + tuple(a for a in op.algorithms if a != "default")
    if op.name == "conv_transpose1d":
        return check_algorithm(algorithm)
    if not isinstance(algorithm, str) or algorithm not in valid:
        raise ValueError(f"algorithm must be one of {', '.join(valid)}; got {algorithm!r}")
    return algorithm


def make_plan(op, p, algorithm="auto", backend=None, device=None, max_workspace_bytes=None, kept=False, prof=None):
    """The Plan of op (an ops.Op or its name) on problem p (see module doc); cached by value.
    kept: the call's parameters stay on the device between calls (a layer's weights); prof: plan for
    this DeviceProfile instead of the device's (tune and tests plan for devices with other settings)."""
    op = ops.get(op) if isinstance(op, str) else op
    check_request(op, algorithm)
    # Check what the key is made of first, so a bad argument gets its own clear message.
    wanted = backends.requested(backend)
    if max_workspace_bytes is not None:
        max_workspace_bytes = check_budget(max_workspace_bytes)
    if prof is None and backends.resolve_name(wanted) == "vulkan":
        prof = profile.current(backends.device_info(device))
    budget = resolve_budget(max_workspace_bytes, prof)
    key = (op.name, p, algorithm, wanted, budget, kept, prof)
    hit = _plans.get(key)
    if hit is not None:
        return hit
    plan = _make_plan(op, p, algorithm, wanted, prof, budget, kept)
    _plans.put(key, plan)
    return plan


def _numpy_plan(op, p, algorithm, auto_backend, budget):
    algo = op.algorithms[0] if algorithm == "auto" else algorithm
    why = (f"the NumPy backend's {algo} form" if algorithm == "auto" else "requested") + (
        "; no Vulkan device here" if auto_backend else "")
    unchunked = op.workspace(p)
    if "gemm" in unchunked and hasattr(p, "gemm_column_bytes"):
        unchunked = dict(unchunked, gemm=p.gemm_column_bytes(4))     # NumPy's columns are float32
    return Plan(op, p, "numpy", None, algorithm, algo, budget, dict(unchunked), unchunked, {}, {}, why,
                auto_backend=auto_backend)


def _make_plan(op, p, algorithm, wanted, prof, budget, kept):
    auto_backend = wanted == "auto"
    if prof is None:
        return _numpy_plan(op, p, algorithm, auto_backend, budget)
    limits, choice, coef = prof.limits, prof.choice, prof.cost
    predicted, ws, chunking, infeasible, scheds = {}, {}, {}, {}, {}
    for algo in op.algorithms:
        if algorithm not in ("auto", algo):
            continue
        try:
            # A requested algorithm is scheduled once, completely; auto prices the candidates from
            # their classes of pieces and schedules the winner below.
            s = op.schedule(p, algo, limits, budget, choice, complete=algorithm != "auto" or len(op.algorithms) == 1)
        except (WorkspaceTooSmall, AlgorithmUnavailable) as exc:
            infeasible[algo] = exc
            continue
        scheds[algo] = s
        predicted[algo] = costmodel.predict(coef.get("vulkan", {}), costmodel.features(s, kept))
        ws[algo] = s.workspace_bytes
        chunking[algo] = s.summary()
    if auto_backend and algorithm in ("auto", op.algorithms[0]):
        predicted["numpy"] = costmodel.predict(coef.get("numpy", {}), op.numpy_features(p))
    if algorithm != "auto":
        if algorithm in infeasible:
            raise infeasible[algorithm]
        chosen, reason = algorithm, "requested"
        if auto_backend and predicted.get("numpy", float("inf")) < predicted[algorithm]:
            chosen = "numpy"
            reason = (f"numpy backend predicted faster ({predicted['numpy'] * 1e3:.2f} ms vs "
                      f"{predicted[algorithm] * 1e3:.2f} ms)")
    else:
        chosen, reason = _choose(predicted, infeasible)
        if chosen in ws and ws[chosen] < op.workspace(p).get(chosen, 0):
            reason += f"; workspace chunked to fit the {fmt_bytes(budget)} budget"
    if chosen == "numpy":
        plan = _numpy_plan(op, p, op.algorithms[0], True, budget)
        plan.predicted_s, plan.reason = predicted, reason
        return plan
    sched = scheds[chosen] if scheds[chosen].complete else op.schedule(p, chosen, limits, budget, choice)
    return Plan(op, p, "vulkan", prof.describe, algorithm, chosen, budget, ws, op.workspace(p), chunking, predicted,
                reason, model_source=prof.source, infeasible=infeasible, auto_backend=auto_backend, schedule=sched,
                profile=prof)


def _choose(predicted, infeasible):
    # gemm must be predicted clearly faster to be worth its workspace (and the model's error)
    rank = {k: v * (1 + GEMM_MARGIN) if k == "gemm" else v for k, v in predicted.items()}
    chosen = min(rank, key=rank.get)
    others = [f"{k} {v * 1e3:.2f} ms" for k, v in sorted(predicted.items(), key=lambda kv: kv[1]) if k != chosen]
    if not others:
        return chosen, (f"the only algorithm that fits ({'; '.join(map(str, infeasible.values()))})" if infeasible
                        else "the op's only algorithm")
    if min(predicted, key=predicted.get) == chosen:
        return chosen, f"predicted {predicted[chosen] * 1e3:.2f} ms, fastest (vs {', '.join(others)})"
    return chosen, (f"predicted {predicted[chosen] * 1e3:.2f} ms; gemm's {predicted['gemm'] * 1e3:.2f} ms is within "
                    f"the {GEMM_MARGIN:.0%} margin that would justify its workspace")


def plan(x_shape, weight_shape, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *, bias=False,
         algorithm="auto", backend=None, device=None, max_workspace_bytes=None, storage="float32"):
    """Plan a conv_transpose1d call from shapes alone: see Plan.explain()."""
    check_algorithm(algorithm)
    p, _ = params_from_shapes(x_shape, weight_shape, stride, padding, output_padding, groups, dilation, bias)
    p = dataclasses.replace(p, storage=check_storage(storage))
    return make_plan("conv_transpose1d", p, algorithm, backend, device, max_workspace_bytes)
