"""The Vulkan backend: executes schedules (vkconvt/schedule.py) through kp on one device.

A schedule is recorded once per device (a `Recording`: pooled buffers bound to pooled pipelines,
and one kp sequence per dispatch, since Kompute records no compute->compute barrier inside a
sequence and sequences evaluated in order are ordered) and kept in the device's plan cache, so a
repeated call only copies its pieces in, evaluates pre-recorded sequences and copies out.
"""
import os
import weakref
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from .. import device as devmod
from .. import activations, costmodel, env, kernels, schedule
from . import vulkan_fast, vulkan_ops
from ..errors import DeviceOutOfMemory
from ..params import all_finite

name = "vulkan"
CPU_GROUPS = 64        # workgroups dispatched on a CPU device (llvmpipe spreads them over its threads)


def unavailable_reason():
    """None when the Vulkan backend can start here, else why not."""
    try:
        import kp  # noqa: F401
    except ImportError as exc:
        return (f"the Kompute Python package 'kp' is not installed ({exc}); scripts/setup.sh builds "
                "kp==0.9.0 from its sdist")
    from .. import shaders, vkinfo
    try:
        devices = vkinfo.list_devices()
    except vkinfo.VulkanUnavailable as exc:
        return str(exc)
    if not devices:
        return "the Vulkan loader reports no device (Debian: apt-get install mesa-vulkan-drivers)"
    problems = shaders.problems()
    return "; ".join(problems) if problems else None


def _setting(attr, convert, doc):
    """A backend setting that plans depend on: stored converted in `attr`; setting it bumps the
    settings generation (env.bump_generation), so no cached call made under the old value is reused."""
    def get(self):
        return getattr(self, attr)

    def put(self, value):
        setattr(self, attr, convert(value))
        env.bump_generation()
    return property(get, put, doc=doc)


@dataclass
class Recording:
    """A schedule recorded on a device: its buffers by role and one kp sequence per dispatch of
    each distinct dispatch list (pieces with the same local problem share them)."""
    tensors: dict
    schedule: object = None                           # the schedule recorded (its dispatch lists key seqs)
    seqs: dict = field(default_factory=dict)          # id(dispatch list) -> [kp.Sequence]
    tensor_ids: set = field(default_factory=set)
    algorithm_keys: set = field(default_factory=set)

    alive: bool = True

    def destroy(self):
        self.alive = False
        for seqs in self.seqs.values():
            for s in seqs:
                s.destroy()
        self.seqs.clear()


@dataclass
class RunInfo:
    """What the last call ran (the benchmark and tests read it)."""
    schedule: object
    recording: Recording
    device_ns: float = 0.0

    @property
    def workspace_bytes(self):
        return getattr(self.schedule, "workspace_bytes", 0)


class VulkanBackend:
    name = name

    def __init__(self, index):
        self.index = index
        self._dev = devmod.get_device(index)
        info = self._dev.info
        self.device_class = "cpu" if info.type == "cpu" else "gpu"
        self.kernel_device = kernels.Device(self.device_class, info.max_shared_memory, info.max_workgroup_invocations,
                                            info.subgroup_size, info.subgroup_ops)
        self._choice = MappingProxyType(self._initial_choice())
        self._max_buffer_bytes = info.max_storage_buffer_range
        self._collect_timestamps = False
        self._owners = set()
        self.last_run = None

    def _initial_choice(self):
        """The kernels `tune` chose on this device (when its stored model has them and this device
        runs them), else the device class's defaults; the portable kernels stay as the fallback."""
        choice = kernels.default_choice(self.device_class)
        tuned = costmodel.tuned_choice(costmodel.load(self._dev.info)[0])
        for op, entries in (tuned or {}).items():
            keep = tuple(e for e in entries if kernels.KERNELS[e[0]].supported(self.kernel_device, e[1]))
            if keep:
                choice[op] = tuple(dict.fromkeys(keep + kernels.only(kernels.FALLBACK[op], self.device_class)))
        return choice

    choice = _setting("_choice", lambda value: MappingProxyType(dict(value)),
                      "{op: ((kernel name, spec), ...)}: the kernels each op tries, in order (read-only; "
                      "assign a new dict).")
    max_buffer_bytes = _setting("_max_buffer_bytes", int, "The largest buffer a plan may use: the device's "
                                "maxStorageBufferRange (tests lower it).")
    collect_timestamps = _setting("_collect_timestamps", bool,
                                  "Record device timestamps (the benchmark's device times).")

    @property
    def dev(self):
        """The process's Device (a forked child gets its own on first use)."""
        if self._dev.pid != os.getpid():
            self._dev = devmod.get_device(self.index)
        return self._dev

    @property
    def device(self):
        return self._dev.info

    def describe(self):
        return self._dev.info.describe()

    def limits(self):
        return schedule.Limits(self.max_buffer_bytes, self.kernel_device)

    def supports(self, kernel):
        """Whether this device offers what `kernel` (a kernels.Kernel) needs to run here."""
        return kernel.supported(self.kernel_device)

    # ------------------------------------------------------------------ recording
    def _groups(self, grid):
        """Workgroups to dispatch for a logical grid: a power of two (few pipelines per kernel)."""
        info = self._dev.info
        cap = CPU_GROUPS if self.device_class == "cpu" else info.max_workgroup_count[0]
        total = max(1, grid[0] * grid[1] * grid[2])
        return min(1 << (min(total, cap) - 1).bit_length(), info.max_workgroup_count[0])

    def _record(self, rec, dispatch_lists, bindings):
        dev, kp = self.dev, self.dev.kp
        for dispatches in dispatch_lists:
            if id(dispatches) in rec.seqs:
                continue
            seqs = []
            for d in dispatches:
                push = d.push()
                tensors = bindings[kernels.KERNELS[d.kernel].op]
                groups = self._groups(d.grid)
                algo = dev.algorithm(d.kernel, tensors, d.spec, push, groups)
                rec.algorithm_keys.add((d.kernel, tuple(d.spec), tuple(id(t) for t in tensors), groups))
                seqs.append(dev.sequence([kp.OpAlgoDispatch(algo, push)], self.collect_timestamps))
            rec.seqs[id(dispatches)] = seqs
        rec.tensor_ids = {id(t) for t in rec.tensors.values()}
        return rec

    def pooled(self, role, nfloats, workspace=False, budget=None):
        """A pooled buffer no larger than this backend's buffer limit (and the budget)."""
        cap = self.max_buffer_bytes if budget is None else min(self.max_buffer_bytes, budget)
        return self.dev.buffer(role, nfloats, workspace=workspace, cap_floats=cap // 4, budget_bytes=budget)

    # ------------------------------------------------------------------ data movement
    def _run(self, rec, dispatches):
        ns = 0.0
        for s in rec.seqs[id(dispatches)]:
            s.eval()
            if self.collect_timestamps and self._dev.info.timestamps:
                ts = s.get_timestamps()
                if len(ts) >= 2:
                    ns += (ts[-1] - ts[0]) * self._dev.info.timestamp_period_ns
        return ns

    def upload(self, t, arr, tag=None, layout=None, pack=None, storage="float32"):
        """Write arr into buffer t (skipped when t already holds data tagged `tag`). layout
        (xoff, ldx): arr's last axis goes to [xoff, xoff + len) of rows ldx long, zeros around;
        pack(dst, arr): a kernel's own weight layout, written straight into the buffer.
        storage float16: the buffer holds packed halves (arr's values already rounded to them)."""
        dev = self.dev
        if tag is not None and dev.tags.get(id(t)) == tag:
            return
        view = t.data()
        if storage == "float16":
            view = view.view(np.float16)
        if pack is not None:
            pack(view, arr)
        elif layout is None or layout == (0, arr.shape[-1]):
            np.copyto(view[:arr.size].reshape(arr.shape), arr, casting="no" if view.dtype == arr.dtype else "unsafe")
        else:
            xoff, ldx = layout
            rows = view[:arr.size // arr.shape[-1] * ldx].reshape(arr.shape[:-1] + (ldx,))
            rows[..., xoff:xoff + arr.shape[-1]] = arr
            zeroed = ("zero margins", layout, arr.shape, storage)      # margins stay zero while nobody else writes
            if tag is not None or dev.tags.get(id(t)) != zeroed:
                rows[..., :xoff] = 0
                rows[..., xoff + arr.shape[-1]:] = 0
            tag = tag or zeroed
        dev.tags[id(t)] = tag
        dev.sync(t, to_device=True)

    def download(self, t, shape, dtype=np.float32):
        self.dev.sync(t, to_device=False)
        return t.data().view(dtype)[:int(np.prod(shape))].reshape(shape)

    # ------------------------------------------------------------------ conv_transpose1d
    def conv_transpose1d(self, plan, x, weights):
        """Run the planner's ConvPlan on x (N, C_in, L); out of device memory, a plan made with
        algorithm='auto' retries its fallbacks (smaller column chunks, then direct) after freeing
        every cached buffer."""
        check_result = self.check_result(plan, weights)
        out = self._attempts(plan, x, weights, plan.needs_finite and not check_result and not weights.finite)
        if check_result and not all_finite(out):
            out = self._attempts(plan, x, weights, True)   # a weight may be inf/NaN: the exact variants
        return out

    def _forget_owner(self, owner):
        self._owners.discard(owner)
        dev = self._dev
        if not dev.closed and dev.pid == os.getpid():
            with dev.lock:
                for key in [k for k in dev.pool if k[0] in (("w", owner), ("bias", owner))]:
                    dev.drop(key)

    @staticmethod
    def owner(weights):
        """Kept weights (a layer's) get buffers of their own, so no other call overwrites them;
        one-off weights share the pool's."""
        return None if weights.token is None else id(weights.token)

    @staticmethod
    def check_result(plan, weights):
        """Kernels that may multiply a weight by a zero margin are exact unless a weight is inf/NaN
        (0*inf). One-off weights larger than the output are not scanned: the result is (a product
        0*inf would show as a NaN), and only a non-finite result is computed again exactly."""
        return plan.needs_finite and weights.token is None and weights.weight.size > plan.params.out_bytes() // 4

    def _attempts(self, plan, x, weights, safe):
        last = None
        for sched in plan.attempts(safe):
            try:
                return self._conv(sched, x, weights)
            except DeviceOutOfMemory as exc:
                self.dev.clear()
                last = exc
        raise plan.out_of_memory(last)

    def execute(self, key, make_schedule, make_buffers, bindings, put, get):
        """Record a schedule once (cached on the device under `key`) and run it: for each step,
        put(tensors, step, schedule) moves the piece's inputs in (False: nothing to run, e.g. a
        window no input reaches), its dispatches run, get(tensors, step) moves its result out."""
        dev = self.dev

        def record():
            sched = make_schedule()
            t = make_buffers(sched)
            return self._record(Recording(t, sched), [st.dispatches for st in sched.steps], bindings(t))

        with dev.lock:
            dev.check_open()
            rec = dev.cached_plan(key + (self.collect_timestamps,), record)
            ns = 0.0
            for st in rec.schedule.steps:
                if put(rec.tensors, st, rec.schedule):
                    ns += self._run(rec, st.dispatches)
                    get(rec.tensors, st)
            self.last_run = RunInfo(rec.schedule, rec, ns)

    def runner(self, plan):
        """A callable run(x, weights) for repeated calls of one plan (vulkan_fast.py)."""
        return vulkan_fast.runner(self, plan)

    def put_weights(self, t, st, sched, weights):
        """A step's weights (and, for the first input-channel chunk, bias) in the layout of the
        kernel that runs it; skipped while the buffers still hold these weights (tags)."""
        p, pc, f, d = sched.params, st.piece, st.piece.fold, st.dispatches[0]
        token = weights.token
        wkey = (pc.g0, pc.g1, pc.co0, pc.co1, pc.ci0, pc.ci1, f.kb, f.kw)
        if sched.algorithm == "gemm":
            wt = weights.layout("gemm", p.gemm_weight)[pc.g0:pc.g1, pc.co0:pc.co1, f.kb:f.kb + f.kw, pc.ci0:pc.ci1]
            wt = wt.reshape(pc.g1 - pc.g0, -1, pc.ci1 - pc.ci0)
            self.upload(t["w"], wt, tag=token and (token, "gemm", d.local.lda, wkey), layout=(0, d.local.lda),
                        storage=p.storage)
        else:
            w4 = weights.weight.reshape(p.groups, p.cig, p.cog, p.k)
            ws = w4[pc.g0:pc.g1, pc.ci0:pc.ci1, pc.co0:pc.co1, f.kb:f.kb + f.kw]
            pack = kernels.KERNELS[d.kernel].pack_weights
            self.upload(t["w"], ws, tag=token and (token, d.kernel, d.spec, wkey),
                        pack=lambda dst, w: pack(dst, w, d.local, d.spec), storage=p.storage)
        if (weights.bias is not None or p.epi.per_channel) and pc.first:
            parts = [np.zeros(p.c_out, np.float32) if weights.bias is None else weights.bias]
            if p.epi.per_channel:
                parts += [weights.act_params[0], weights.act_params[1]]
            rows = np.stack([a.reshape(p.groups, p.cog)[pc.g0:pc.g1, pc.co0:pc.co1] for a in parts])
            self.upload(t["bias"], rows, tag=token and (token, "bias", len(parts), wkey[:4]))

    def _conv(self, sched, x, weights):
        p = sched.params
        # zeros: calloc'd pages, so the outputs no input reaches (gaps of a huge stride) cost nothing
        out = np.zeros((p.n, p.c_out, p.l_out), dtype=np.float16 if sched.out_half else np.float32)
        out4 = out.reshape(p.n, p.groups, p.cog, p.l_out)
        x4 = x.reshape(p.n, p.groups, p.cig, p.l_in)
        b2 = None if weights.bias is None else weights.bias.reshape(p.groups, p.cog)

        owner = self.owner(weights)
        if owner is not None and owner not in self._owners:
            # the layer's buffers go back to the pool's memory when the layer is gone
            self._owners.add(owner)
            weakref.finalize(weights, self._forget_owner, owner)

        def buffers(sched):
            def buf(role, n, **kw):          # n elements of the storage type, in 32-bit words
                return self.pooled(role, -(-n * p.elem_bytes // 4), **kw)
            per_channel = 3 if p.epi.per_channel else 1          # [bias | alpha | 1/(beta + eps)]
            t = dict(x=buf("x", sched.x_floats), w=buf(("w", owner), sched.w_floats),
                     out=self.pooled("out", sched.out_floats),
                     bias=self.pooled(("bias", owner), per_channel * sched.geometry["gc"] * sched.geometry["cc"])
                     if p.bias or p.epi.per_channel else self.dev.dummy())
            if sched.algorithm == "gemm":
                t["col"] = buf("col", sched.col_floats, workspace=True, budget=sched.budget)
            if sched.out_half:
                t["out16"] = self.pooled("out16", 2 * kernels.cdiv(sched.out_floats, 4))
            return t

        def bindings(t):
            return {"conv_transpose_1d": [t["x"], t["w"], t["bias"], t["out"]],
                    "matmul": [t["w"], t["x"], t.get("col")], "col2im_1d": [t.get("col"), t["bias"], t["out"]],
                    "to_float16": [t["out"], t.get("out16")]}

        def put(t, st, sched):
            pc, f = st.piece, st.piece.fold
            if pc.empty:
                if b2 is not None:
                    out4[pc.n0:pc.n1, pc.g0:pc.g1, pc.co0:pc.co1, pc.t0:pc.t1] = b2[pc.g0:pc.g1, pc.co0:pc.co1, None][None]
                return False
            xs = x4[pc.n0:pc.n1, pc.g0:pc.g1, pc.ci0:pc.ci1, f.lb:f.lb + f.lw]
            self.upload(t["x"], xs, layout=schedule.x_layout(st, sched.algorithm, sched.choice), storage=p.storage)
            self.put_weights(t, st, sched, weights)
            return True

        def get(t, st):
            pc = st.piece
            res = self.download(t["out16"] if sched.out_half else t["out"],
                                (pc.n1 - pc.n0, pc.g1 - pc.g0, pc.co1 - pc.co0, pc.t1 - pc.t0), out.dtype)
            view = out4[pc.n0:pc.n1, pc.g0:pc.g1, pc.co0:pc.co1, pc.t0:pc.t1]
            if pc.first:
                view[...] = res
            else:
                view += res

        self.execute(("conv", sched.key, owner), lambda: sched, buffers, bindings, put, get)
        if p.epi.act and not self.last_run.schedule.fused:
            activations.apply(out, p.epi, weights.act_params)      # not fusable here: on the host
        return out

    # ------------------------------------------------------------------ standalone ops
    def matmul(self, a, b):
        """a (Ba, M, K) or (M, K); b (Bb, K, N) or (K, N); float32 contiguous. Batches broadcast."""
        return vulkan_ops.matmul(self, a, b)

    def col2im_1d(self, col, stride, padding, dilation, output_padding, bias):
        """col (N, C, K, L) -> (N, C, L_out): the shader alone, as a public op."""
        return vulkan_ops.col2im_1d(self, col, stride, padding, dilation, output_padding, bias)


def create(device=None):
    reason = unavailable_reason()
    if reason is not None:
        from ..errors import BackendUnavailable
        raise BackendUnavailable(name, reason)
    return VulkanBackend(device)
