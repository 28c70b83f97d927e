"""The Vulkan backend: executes schedules (vkconvt/schedule.py) through kp on one device.

A schedule is recorded once per device (a `Recording`: pooled buffers bound to pooled pipelines,
and one kp sequence per dispatch, since Kompute records no compute->compute barrier inside a
sequence and sequences evaluated in order are ordered) and kept in the device's plan cache, so a
repeated call only copies its pieces in, evaluates pre-recorded sequences and copies out.
"""
import os
from dataclasses import dataclass, field

import numpy as np

from .. import device as devmod
from .. import kernels, schedule
from ..errors import DeviceOutOfMemory

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


@dataclass
class Recording:
    """A schedule recorded on a device: its buffers by role and one kp sequence per dispatch of
    each distinct dispatch list (pieces with the same local problem share them)."""
    tensors: dict
    schedule: object = None                           # the schedule recorded (its dispatch lists key seqs)
    seqs: dict = field(default_factory=dict)          # id(dispatch list) -> [kp.Sequence]
    tensor_ids: set = field(default_factory=set)
    algorithm_keys: set = field(default_factory=set)

    def destroy(self):
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
        self.choice = kernels.default_choice(self.device_class)
        # Overridable for tests, so that splitting is exercised on small problems too.
        self.max_buffer_bytes = info.max_storage_buffer_range
        self.collect_timestamps = False
        self.last_run = None

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
        return schedule.Limits(self.max_buffer_bytes)

    def supports(self, kernel):
        """Whether this device offers what `kernel` (a kernels.Kernel) needs to run here."""
        return kernel.supported(self._dev.info)

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

    def _buffer(self, role, nfloats, workspace=False, budget=None):
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

    def _put(self, t, arr, tag=None, layout=None):
        """Write arr into buffer t (skipped when t already holds data tagged `tag`). layout
        (xoff, ldx): arr's last axis goes to [xoff, xoff + len) of rows ldx long, zeros around."""
        dev = self.dev
        if tag is not None and dev.tags.get(id(t)) == tag:
            return
        view = t.data()
        if layout is None or layout == (0, arr.shape[-1]):
            np.copyto(view[:arr.size].reshape(arr.shape), arr, casting="no")
        else:
            xoff, ldx = layout
            rows = view[:arr.size // arr.shape[-1] * ldx].reshape(arr.shape[:-1] + (ldx,))
            rows[..., :xoff] = 0
            rows[..., xoff:xoff + arr.shape[-1]] = arr
            rows[..., xoff + arr.shape[-1]:] = 0
        dev.tags[id(t)] = tag
        dev.sync(t, to_device=True)

    def _get(self, t, shape):
        self.dev.sync(t, to_device=False)
        return t.data()[:int(np.prod(shape))].reshape(shape)

    # ------------------------------------------------------------------ conv_transpose1d
    def conv_transpose1d(self, plan, x, weights):
        """Run the planner's ConvPlan on x (N, C_in, L); out of device memory, a plan made with
        algorithm='auto' retries its fallbacks (smaller column chunks, then direct) after freeing
        every cached buffer."""
        last = None
        for sched in plan.attempts():
            try:
                return self._conv(sched, x, weights)
            except DeviceOutOfMemory as exc:
                self.dev.clear()
                last = exc
        raise plan.out_of_memory(last)

    def _execute(self, key, make_schedule, make_buffers, bindings, put, get):
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

    def _conv(self, sched, x, weights):
        p = sched.params
        # zeros: calloc'd pages, so the outputs no input reaches (gaps of a huge stride) cost nothing
        out = np.zeros((p.n, p.c_out, p.l_out), dtype=np.float32)
        out4 = out.reshape(p.n, p.groups, p.cog, p.l_out)
        x4 = x.reshape(p.n, p.groups, p.cig, p.l_in)
        w4 = weights.weight.reshape(p.groups, p.cig, p.cog, p.k)
        b2 = None if weights.bias is None else weights.bias.reshape(p.groups, p.cog)
        token = weights.token

        def buffers(sched):
            buf = self._buffer
            t = dict(x=buf("x", sched.x_floats), w=buf("w", sched.w_floats), out=buf("out", sched.out_floats),
                     bias=buf("bias", sched.geometry["gc"] * sched.geometry["cc"]) if p.bias else self.dev.dummy())
            if sched.algorithm == "gemm":
                t["col"] = buf("col", sched.col_floats, workspace=True, budget=sched.budget)
            return t

        def bindings(t):
            return {"conv_transpose_1d": [t["x"], t["w"], t["bias"], t["out"]],
                    "matmul": [t["w"], t["x"], t.get("col")], "col2im_1d": [t.get("col"), t["bias"], t["out"]]}

        def put(t, st, sched):
            pc, f = st.piece, st.piece.fold
            if pc.empty:
                if b2 is not None:
                    out4[pc.n0:pc.n1, pc.g0:pc.g1, pc.co0:pc.co1, pc.t0:pc.t1] = b2[pc.g0:pc.g1, pc.co0:pc.co1, None][None]
                return False
            name, spec = sched.choice["conv_transpose_1d"]
            gemm = sched.algorithm == "gemm"
            xs = x4[pc.n0:pc.n1, pc.g0:pc.g1, pc.ci0:pc.ci1, f.lb:f.lb + f.lw]
            self._put(t["x"], xs, layout=None if gemm else kernels.KERNELS[name].x_layout(f.lw, spec))
            wkey = (pc.g0, pc.g1, pc.co0, pc.co1, pc.ci0, pc.ci1, f.kb, f.kw)
            if gemm:
                wt = weights.layout("gemm", p.gemm_weight)[pc.g0:pc.g1, pc.co0:pc.co1, f.kb:f.kb + f.kw, pc.ci0:pc.ci1]
                self._put(t["w"], wt, tag=token and (token, "gemm", wkey))
            else:
                ws = w4[pc.g0:pc.g1, pc.ci0:pc.ci1, pc.co0:pc.co1, f.kb:f.kb + f.kw]
                self._put(t["w"], ws, tag=token and (token, name, wkey))
            if b2 is not None and pc.first:
                self._put(t["bias"], b2[pc.g0:pc.g1, pc.co0:pc.co1], tag=token and (token, "bias", wkey[:4]))
            return True

        def get(t, st):
            pc = st.piece
            res = self._get(t["out"], (pc.n1 - pc.n0, pc.g1 - pc.g0, pc.co1 - pc.co0, pc.t1 - pc.t0))
            view = out4[pc.n0:pc.n1, pc.g0:pc.g1, pc.co0:pc.co1, pc.t0:pc.t1]
            if pc.first:
                view[...] = res
            else:
                view += res

        self._execute(("conv", sched.key), lambda: sched, buffers, bindings, put, get)
        return out

    # ------------------------------------------------------------------ matmul
    def matmul(self, a, b):
        """a (Ba, M, K) or (M, K); b (Bb, K, N) or (K, N); float32 contiguous. Batches broadcast."""
        a3 = a if a.ndim == 3 else a[None]
        b3 = b if b.ndim == 3 else b[None]
        batch, (m, kdim), ncols = max(a3.shape[0], b3.shape[0]), a3.shape[1:], b3.shape[2]
        out = np.empty((batch, m, ncols), dtype=np.float32)
        key = ("matmul", a3.shape[0], b3.shape[0], m, kdim, ncols, self.max_buffer_bytes, tuple(self.choice["matmul"]))

        def put(t, st, sched):
            pc = st.piece
            for name, arr, cols in (("a", a3, slice(None)), ("b", b3, slice(pc.c0, pc.c1))):
                bsl = slice(pc.b0, pc.b1) if arr.shape[0] > 1 else slice(0, 1)
                self._put(t[name], arr[bsl, pc.r0:pc.r1] if name == "a" else arr[bsl, :, cols])
            return True

        def get(t, st):
            pc = st.piece
            out[pc.b0:pc.b1, pc.r0:pc.r1, pc.c0:pc.c1] = self._get(t["c"], (pc.b1 - pc.b0, pc.r1 - pc.r0, pc.c1 - pc.c0))

        self._execute(key, lambda: schedule.schedule_matmul(a3.shape[0], b3.shape[0], m, kdim, ncols, self.limits(),
                                                            self.choice),
                      lambda sched: {k: self._buffer("mm_" + k, v) for k, v in sched.floats.items()},
                      lambda t: {"matmul": [t["a"], t["b"], t["c"]]}, put, get)
        return out if (a.ndim == 3 or b.ndim == 3) else out[0]

    # ------------------------------------------------------------------ col2im_1d
    def col2im_1d(self, col, stride, padding, dilation, output_padding, bias):
        """col (N, C, K, L) -> (N, C, L_out): the shader alone, as a public op."""
        n, c, k, l_in = col.shape
        l_out = (l_in - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1
        out = np.zeros((n, c, l_out), dtype=np.float32)
        key = ("col2im_1d", n, c, k, l_in, stride, padding, dilation, l_out, bias is not None, self.max_buffer_bytes,
               tuple(self.choice["col2im_1d"]))

        def buffers(sched):
            return {"col": self._buffer("c2i_col", sched.floats["col"]), "out": self._buffer("c2i_out", sched.floats["out"]),
                    "bias": self._buffer("c2i_bias", c) if bias is not None else self.dev.dummy()}

        def put(t, st, sched):
            pc, f = st.piece, st.piece.fold
            if not st.dispatches:
                if bias is not None:
                    out[pc.n0:pc.n1, pc.c0:pc.c1, pc.t0:pc.t1] = bias[pc.c0:pc.c1, None][None]
                return False
            self._put(t["col"], col[pc.n0:pc.n1, pc.c0:pc.c1, f.kb:f.kb + f.kw, f.lb:f.lb + f.lw])
            if bias is not None:
                self._put(t["bias"], bias[pc.c0:pc.c1])
            return True

        def get(t, st):
            pc = st.piece
            out[pc.n0:pc.n1, pc.c0:pc.c1, pc.t0:pc.t1] = self._get(t["out"], (pc.n1 - pc.n0, pc.c1 - pc.c0, pc.t1 - pc.t0))

        self._execute(key, lambda: schedule.schedule_col2im(n, c, k, l_in, l_out, stride, padding, dilation,
                                                            bias is not None, self.limits(), self.choice),
                      buffers, lambda t: {"col2im_1d": [t["col"], t["bias"], t["out"]]}, put, get)
        return out


def create(device=None):
    reason = unavailable_reason()
    if reason is not None:
        from ..errors import BackendUnavailable
        raise BackendUnavailable(name, reason)
    return VulkanBackend(device)
