"""The execution figures a discrete GPU cares about (bench suite `gpu-path`):

  chain   HiFi-GAN V1's four upsampling layers (one second of audio), called in turn: through the
          NumPy backend, through vkconvt layers on host arrays (each layer's result comes back and
          goes up again), and on device arrays (x goes up once, the final result comes down once);
          each with the queue submissions and bytes of one chain, from the device's counters.
  model   the fixed cost of one HiFi-GAN ups[0] call on a discrete GPU, before (v0.2.0: a queue
          submission and fence wait per upload, per dispatch and per download, whole buffers
          copied) and now (one submission, the bytes in use), as a MODEL from the schedule's counts
          and published costs: 10 and 50 us per submission + fence wait, 16 GB/s over PCIe. Not a
          measurement.
"""
import numpy as np

import vkconvt
from .. import timing
from .judge import MAX_RUNS, TOL, _fill, _judge

# HiFi-GAN V1 (22.05 kHz, hop 256): (C_in, C_out, K, stride, padding), 86 mel frames in
HIFIGAN_UPS = [(512, 256, 16, 8, 4), (256, 128, 16, 8, 4), (128, 64, 4, 2, 1), (64, 32, 4, 2, 1)]
L_IN = 86
SUBMIT_US = (10, 50)
PCIE_BYTES_PER_S = 16e9
COUNTS = ("submissions", "fence_waits", "bytes_up", "bytes_down")


def _stack(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, HIFIGAN_UPS[0][0], L_IN)).astype(np.float32)
    ws = [((rng.standard_normal((ci, co, k)) / np.sqrt(ci * k)).astype(np.float32),
           rng.standard_normal(co).astype(np.float32), s, p) for ci, co, k, s, p in HIFIGAN_UPS]
    return x, ws


def _counts(be, fn):
    before = dict(be.dev.counters)
    out = fn()
    return out, {k: be.dev.counters[k] - before[k] for k in COUNTS}


def chain_case(case, args, be):
    x, ws = _stack()
    ref = x
    for w, b, s, p in ws:
        ref = vkconvt.conv_transpose1d(ref, w, b, s, p, backend="numpy")
    layers = [vkconvt.ConvTranspose1d(w, b, s, p, backend="vulkan", device=args.device) for w, b, s, p in ws]

    def numpy_chain():
        y = x
        for w, b, s, p in ws:
            y = vkconvt.conv_transpose1d(y, w, b, s, p, backend="numpy")
        return y

    def host_chain():
        y = x
        for layer in layers:
            y = layer(y)
        return y

    def device_chain():
        y = vkconvt.asarray(x, device=args.device)
        for layer in layers:
            y = layer(y)
        return y.numpy()
    records, runs = [], []
    for name, fn in (("numpy-chain", numpy_chain), ("vkconvt-host-arrays", host_chain),
                     ("vkconvt-device-arrays", device_chain)):
        rec = dict(impl=name, library="numpy" if name.startswith("numpy") else "vkconvt", device=be.dev.info.name,
                   algorithm="auto", status="ok", tag="hifigan_v1 ups[0..3]")
        try:
            out = fn()
            if name != "numpy-chain":
                out, counts = _counts(be, fn)
                rec.update(counts)
            _judge(rec, out.astype(np.float64), ref.astype(np.float64), TOL * 10)
        except Exception as exc:  # one failing implementation must not stop the run
            rec.update(status="error", error=f"{type(exc).__name__}: {exc}")
        records.append(rec)
        if rec["status"] == "ok":
            runs.append((rec, fn))
    # NumPy alone first, then the vkconvt chains interleaved after its BLAS threads have parked (a
    # vkconvt chain timed right after a NumPy one shares the cores with their spinning)
    cpu = [(rec, fn) for rec, fn in runs if rec["library"] == "numpy"]
    vk = [(rec, fn) for rec, fn in runs if rec["library"] != "numpy"]
    for group in (cpu, vk):
        timing.settle()
        if group:
            for (rec, _), ts in zip(group, timing.interleaved([fn for _, fn in group], args.budget, 3, MAX_RUNS)):
                _fill(rec, ts)
    return records


def _before(sched, kept):
    """(submissions, bytes) of one call under v0.2.0's execution model on a discrete GPU: every
    upload, dispatch and download its own submission and fence wait, whole pooled buffers copied."""
    subs, nbytes = 0, 0
    for st in sched.steps:
        if not st.dispatches:
            continue
        for t in st.uploads:
            if not (kept and t.tag is not None):
                subs += 1
                nbytes += sched.buffers[t.role].nbytes
        subs += len(st.dispatches) + len(st.downloads)
        nbytes += sum(sched.buffers[t.role].nbytes for t in st.downloads)
    return subs, nbytes


def model_case(case, args, be):
    """Records of the modelled fixed cost of HiFi-GAN ups[0], function and layer, before and now."""
    x, ws = _stack()
    w, b, s, p = ws[0]
    layer = vkconvt.ConvTranspose1d(w, b, s, p, backend="vulkan", device=args.device)
    records = []
    with vkconvt.settings.override(memory="device"):
        for how, fn in (("call", lambda: vkconvt.conv_transpose1d(x, w, b, s, p, backend="vulkan")),
                        ("layer", lambda: layer(x))):
            with vkconvt.trace() as ran:
                fn()
            sched = ran[-1][2]
            _, now = _counts(be, fn)
            subs0, bytes0 = _before(sched, how == "layer")
            for when, subs, nbytes in (("v0.2.0", subs0, bytes0),
                                       ("now", now["submissions"], now["bytes_up"] + now["bytes_down"])):
                for us in SUBMIT_US:
                    t = subs * us * 1e-6 + nbytes / PCIE_BYTES_PER_S
                    records.append(dict(impl=f"model {how} {when} @{us}us", library="model", device="discrete GPU",
                                        algorithm=sched.algorithm, status="ok", tag="hifigan_v1 ups[0]", median_s=t,
                                        submissions=subs, fence_waits=subs, bytes_up=nbytes, bytes_down=0))
    return records


def chain_table(records):
    head = ["chain", "ms", "vs NumPy", "submissions", "bytes up", "bytes down"]
    rows = []
    recs = {r["impl"]: r for r in records if r["kind"] == "chain"}
    base = recs.get("numpy-chain")
    for impl in ("numpy-chain", "vkconvt-host-arrays", "vkconvt-device-arrays"):
        r = recs.get(impl)
        if r is None:
            continue
        t = r.get("median_s") if r["status"] == "ok" else None
        rows.append([impl, f"{t * 1e3:.2f}" if t else r["status"].upper(),
                     f"{base['median_s'] / t:.2f}" if t and base and base.get("median_s") else "-",
                     str(r.get("submissions", "-")), str(r.get("bytes_up", "-")), str(r.get("bytes_down", "-"))])
    note = ("HiFi-GAN V1 ups[0..3] called in turn (1 s of audio). vs NumPy: NumPy's time / this one (above 1: "
            "faster). Counts are one chain's, from vkconvt.stats(); device arrays move x up and the result down "
            "once.")
    return "chained layers on device arrays", head, rows, note


def model_table(records):
    head = ["what", "submissions", "bytes over PCIe", "fixed cost @10us", "fixed cost @50us"]
    rows, recs = [], {r["impl"]: r for r in records if r["kind"] == "gpu-model"}
    for how in ("call", "layer"):
        for when in ("v0.2.0", "now"):
            a, b = recs.get(f"model {how} {when} @10us"), recs.get(f"model {how} {when} @50us")
            if a and b:
                rows.append([f"ups[0] {how}, {when}", str(a["submissions"]), str(a["bytes_up"]),
                             f"{a['median_s'] * 1e6:.0f} us", f"{b['median_s'] * 1e6:.0f} us"])
    note = ("A MODEL, not a measurement: submissions x (10 or 50 us per submission and fence wait) + bytes / "
            "16 GB/s, from the counts of the schedule vkconvt runs (device-local buffers with staging). v0.2.0 "
            "submitted every upload, dispatch and download alone and copied whole buffers.")
    return "modelled fixed cost per call on a discrete GPU", head, rows, note
