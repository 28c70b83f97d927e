"""Specialization constants from a tuning file can never make vkconvt wrong or stuck (issue 22,
item 1). Every spec kernels.check_spec accepts (each field within the kernel's ranges, the kernel's
constraint rules, what the device offers) computes the right answer: random accepted specs of every
kernel are forced on case-table problems and compared with the NumPy reference, each call under a
time limit in a subprocess (a hang fails the test, it does not stall the suite). The specs the
issue found harmful are refused, and forcing them anyway never reaches the device.

The draw is seeded (VKCONVT_FUZZ_SEED, default 0), so a rerun compiles nothing new (Mesa caches the
pipelines); VKCONVT_FUZZ_SCALE=4 draws four times as many specs per kernel."""
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from vkconvt import backends, kernels
from conftest import needs_vulkan

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = int(os.environ.get("VKCONVT_FUZZ_SEED", "0"))
SCALE = float(os.environ.get("VKCONVT_FUZZ_SCALE", "1"))
# Specs per kernel: cold compiles on lavapipe take ~40 s for conv_transpose_1d_sg and up to ~25 s
# for the portable conv kernel (large register tiles), a second or less for most others.
COUNT = {"conv_transpose_1d_sg": 2, "conv_transpose_1d": 3, "conv_transpose_1d_tiled": 2, "matmul_tiled": 2,
         "conv1d_sg": 2, "conv1d": 3, "conv1d_tiled": 2, "conv1d_grad_weight_sg": 2, "conv1d_grad_weight_tiled": 2}
PER_CALL_S = 300            # a cold compile of the largest spec on a loaded 2-core machine fits (measured <= 180 s)
# Case-table rows (tests/cases.py) run per spec: small and odd sizes, bias, dilation, groups,
# depthwise, K=1337, many input channels, a HiFi-GAN-like layer, an unbatched input.
ROWS = [0, 2, 5, 7, 10, 11, 13, 17, 18, 19]
# conv1d's table (CONV1D_CASES): the same kinds of rows, with a resblock-like layer
ROWS_1D = [0, 2, 5, 7, 10, 11, 13, 19, 20, 21]
FUZZED = [k.name for k in kernels.KERNELS.values() if k.storage == "float32" and k.spv_path == ""]

ISSUE_SPECS = [("conv_transpose_1d_sg", (8, 8, 48, 1, 0, 0, 1, 2), r"sg=0"),      # all zeros before
               ("conv_transpose_1d_sg", (8, 8, 48, 1, 8, 0, 1, 0), r"cip=0"),     # hung before
               ("matmul_sg", (8, 64, 3, 8, 4), r"tn=3"),                          # all zeros before
               ("matmul_sg", (8, 64, 6, 8, 4), r"tn=6 breaks the kernel's rule 'tn % 4 == 0'"),
               ("conv_transpose_1d_sg", (12, 8, 48, 1, 8, 0, 1, 2), r"wg=12, sg=8 break .*'wg % sg == 0'"),
               ("conv_transpose_1d_sg", (8, 6, 48, 1, 4, 0, 1, 2), r"to=6"),
               ("conv_transpose_1d_sg", (8, 8, 36, 1, 8, 0, 1, 2), r"j=36, sg=8 break .*'j % sg == 0'"),
               ("matmul_sg", (8, 60, 4, 8, 4), r"tm=60, sg=8 break .*'tm % sg == 0'"),
               ("matmul_sg", (8, 64, 4, 8, 3), r"kk=3"),
               ("matmul_sg", (8, 64, 4, 6, 4), r"sg=6 breaks .*'sg & \(sg - 1\) == 0'"),
               ("conv_transpose_1d_dw", (8, 2, 12, 6, 2, 0), r"p=6 breaks"),
               ("matmul_tiled", (16, 8, 4, 1, 2, 1), r"bk=2"),
               ("matmul", (8, 1, 0, 8), r"tm=0"),
               ("col2im_1d", (0,), r"wg=0")]


def lavapipe_device():
    return kernels.device_of(backends.get("vulkan").device)


def draw(kern, rng, dev, count):
    """`count` distinct specs check_spec accepts on dev: each field log-uniform in its range."""
    out, tries = [], 0
    while len(out) < count and tries < 200000:
        tries += 1
        vals = []
        for f in kern.spec:
            lo, hi = kern.ranges.get(f, (1, 65535))
            v = lo if hi == lo else int(round(math.exp(rng.uniform(math.log(lo + 1), math.log(hi + 1))))) - 1
            vals.append(min(hi, max(lo, v)))
        try:
            spec = tuple(kernels.check_spec(kern.name, vals, dev))
        except ValueError:
            continue
        if spec not in out and spec != tuple(kern.defaults[dev.device_class]):
            out.append(spec)
    assert len(out) == count, f"{kern.name}: only {len(out)} accepted specs in {tries} draws"
    return out


def run_py(code, args, timeout):
    env = dict(os.environ, PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), json.dumps(args)], capture_output=True,
                          text=True, env=env, timeout=timeout)


FUZZ = """
    import faulthandler, json, sys, numpy as np, vkconvt
    from vkconvt import kernels, settings
    from cases import CASES, assert_close
    from cases import CONV1D_CASES
    name, specs, rows, rows_1d, per_call = json.loads(sys.argv[1])
    kern = kernels.KERNELS[name]
    cls = vkconvt.backends.get("vulkan").profile().device_class
    rng = np.random.default_rng(1)

    def guarded(fn):
        faulthandler.dump_traceback_later(per_call, exit=True)     # a hang ends this process
        try:
            with vkconvt.trace() as runs:
                out = fn()
        finally:
            faulthandler.cancel_dump_traceback_later()
        return out, {(d.kernel, tuple(d.spec)) for _, _, s in runs if s for st in s.steps for d in st.dispatches}

    # fresh inputs for every spec: a kernel that wrote nothing would otherwise leave the previous
    # spec's (right) results in the pooled buffers
    def conv_problems():
        for r in rows:
            c = CASES[r]
            x, w, b = c.inputs(seed=int(rng.integers(1 << 30)))
            algo = "direct" if kern.op == "conv_transpose_1d" else "gemm"
            yield (f"case{r}", lambda x=x, w=w, b=b, c=c, algo=algo: vkconvt.conv_transpose1d(
                x, w, b, **c.kwargs(), algorithm=algo, backend="vulkan"),
                vkconvt.conv_transpose1d(x, w, b, **c.kwargs(), backend="numpy"), 1e-7)

    def problems():
        if kern.op in ("conv_transpose_1d", "col2im_1d", "matmul"):
            yield from conv_problems()
        if kern.op == "matmul":
            for m, k, n, batch in ((37, 19, 53, 0), (5, 300, 9, 3), (64, 64, 64, 0), (1, 1, 1, 2)):
                a = rng.standard_normal((m, k)).astype(np.float32)
                b = rng.standard_normal(((batch,) if batch else ()) + (k, n)).astype(np.float32)
                yield (f"mm{m}x{k}x{n}", lambda a=a, b=b: vkconvt.matmul(a, b, backend="vulkan"),
                       vkconvt.matmul(a, b, backend="numpy"), 1e-7)
        if kern.op == "col2im_1d":
            for shape, s, p, d in (((2, 3, 5, 17), 3, 2, 2), ((1, 4, 1, 100), 1, 0, 1), ((3, 2, 7, 9), 4, 5, 3)):
                col = rng.standard_normal(shape).astype(np.float32)
                yield (f"col{shape}", lambda col=col, s=s, p=p, d=d: vkconvt.col2im_1d(
                    col, stride=s, padding=p, dilation=d, backend="vulkan"),
                    vkconvt.col2im_1d(col, stride=s, padding=p, dilation=d, backend="numpy"), 1e-7)
        if kern.op in ("conv1d", "im2col_1d", "bias_act_1d", "matmul"):
            for r in rows_1d:
                c = CONV1D_CASES[r]
                x, w, b = c.inputs(seed=int(rng.integers(1 << 30)))
                algo = "direct" if kern.op == "conv1d" else "gemm"
                yield (f"conv1d{r}", lambda x=x, w=w, b=b, c=c, algo=algo: vkconvt.conv1d(
                    x, w, b, *c.hyper(), algorithm=algo, backend="vulkan"),
                    vkconvt.conv1d(x, w, b, *c.hyper(), backend="numpy"), 1e-7)
        if kern.op in ("conv1d_grad_weight", "im2col_1d", "col2im_1d", "matmul"):
            for r in rows:
                c = CASES[r]
                x, w, b = c.inputs(seed=int(rng.integers(1 << 30)))
                go = rng.standard_normal(vkconvt.conv_transpose1d(x, w, **c.kwargs(), backend="numpy").shape)
                go = go.astype(np.float32)
                algo = "direct" if kern.op == "conv1d_grad_weight" else "gemm"
                grad = dict(**c.kwargs(), output_mask=(False, True, False))
                yield (f"gw{r}", lambda x=x, w=w, go=go, grad=grad, algo=algo: vkconvt.conv_transpose1d_backward(
                    go, x, w, **grad, algorithm=algo, backend="vulkan")[1],
                    vkconvt.conv_transpose1d_backward(go, x, w, **grad, backend="numpy")[1], 1e-7)
        if kern.op == "to_float16":
            for r in rows:
                c = CASES[r]
                x, w, b = (None if v is None else v.astype(np.float16) for v in c.inputs(seed=int(rng.integers(1 << 30))))
                yield (f"f16case{r}", lambda x=x, w=w, b=b, c=c: vkconvt.conv_transpose1d(
                    x, w, b, **c.kwargs(), backend="vulkan").astype(np.float32),
                    vkconvt.conv_transpose1d(x, w, b, **c.kwargs(), backend="numpy").astype(np.float32), 1e-6)

    for spec in specs:
        entry = ((name, kern.make_spec(spec)),)
        if name != kernels.FALLBACK[kern.op]:
            entry += kernels.only(kernels.FALLBACK[kern.op], cls)
        ran = set()
        with settings.override(kernels={kern.op: entry}):
            for label, fn, ref, tol in problems():
                out, used = guarded(fn)
                assert_close(np.asarray(out), ref, tol)
                ran |= {s for k, s in used if k == name}
        print("SPEC", json.dumps(list(spec)), "RAN", json.dumps(sorted(ran)), flush=True)
"""


@needs_vulkan
@pytest.mark.parametrize("name", FUZZED)
def test_every_spec_check_spec_accepts_is_exact(name):
    kern = kernels.KERNELS[name]
    rng = np.random.default_rng([SEED, FUZZED.index(name)])
    specs = draw(kern, rng, lavapipe_device(), max(1, round(COUNT.get(name, 4) * SCALE)))
    r = run_py(FUZZ, [name, specs, ROWS, ROWS_1D, PER_CALL_S], timeout=PER_CALL_S * (len(specs) + 1) + 120)
    assert r.returncode == 0, f"specs {specs}: rc {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("SPEC")]
    assert len(lines) == len(specs), r.stdout
    for ln in lines:          # the kernel really ran the spec on some problem (else nothing was tested)
        assert "RAN []" not in ln, f"{name} took none of the problems with {ln}"


@pytest.mark.parametrize("name,spec,field", ISSUE_SPECS, ids=[f"{n}{s}" for n, s, _ in ISSUE_SPECS])
def test_the_issues_specs_are_refused_naming_the_field(name, spec, field):
    with pytest.raises(ValueError, match=field):
        kernels.check_spec(name, list(spec))


def test_every_default_and_search_spec_keeps_the_rules():
    for kern in kernels.KERNELS.values():
        for cls in kern.defaults:
            for spec in kern.search_specs(cls):
                assert kernels.check_spec(kern.name, list(spec)) == spec


@needs_vulkan
def test_forcing_a_refused_spec_never_reaches_the_device():
    """settings.override does not go through check_spec: the kernel's constraint still keeps the
    spec from running (the piece falls to the portable kernel) and the answer is right."""
    code = """
        import faulthandler, json, sys, numpy as np, vkconvt
        from vkconvt import kernels, settings
        from cases import assert_close
        rng = np.random.default_rng(0)
        for name, spec, _ in json.loads(sys.argv[1]):
            x = rng.standard_normal((1, 64, 100)).astype(np.float32)       # fresh: no stale buffer helps
            w = rng.standard_normal((64, 32, 8)).astype(np.float32)
            ref = vkconvt.conv_transpose1d(x, w, stride=4, backend="numpy")
            kern = kernels.KERNELS[name]
            if kern.op not in ("conv_transpose_1d", "matmul"):
                continue
            entry = ((name, kern.make_spec(spec)),) + kernels.only(kernels.FALLBACK[kern.op], "cpu")
            faulthandler.dump_traceback_later(120, exit=True)
            with settings.override(kernels={kern.op: entry}), vkconvt.trace() as runs:
                out = vkconvt.conv_transpose1d(x, w, stride=4, backend="vulkan",
                                               algorithm="direct" if kern.op == "conv_transpose_1d" else "gemm")
            faulthandler.cancel_dump_traceback_later()
            used = {(d.kernel, tuple(d.spec)) for _, _, s in runs for st in s.steps for d in st.dispatches}
            assert (name, tuple(spec)) not in used, (name, spec, used)    # (a portable kernel runs its defaults)
            assert_close(out, ref)
            print("fell back", name, spec)
    """
    r = run_py(code, ISSUE_SPECS, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("fell back") == sum(kernels.KERNELS[n].op in ("conv_transpose_1d", "matmul")
                                              for n, _, _ in ISSUE_SPECS)
