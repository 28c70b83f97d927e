"""The Vulkan backend's fast path for repeated calls: a runner that keeps a single-piece
recording's buffers and sequences and only copies in, evaluates and copies out."""
import numpy as np

from .. import schedule
from ..params import all_finite


def runner(be, plan):
    """A callable run(x, weights) for repeated calls of one plan. For the common single-piece
    schedule on a host-visible device it keeps the recording's buffer views and sequences and
    only copies in, evaluates and copies out (checking that the recording is still cached);
    otherwise, and whenever that check fails, it is the general path."""
    sched = plan.schedule
    slow = lambda x, weights: be.conv_transpose1d(plan, x, weights)  # noqa: E731
    if len(sched.steps) != 1 or sched.steps[0].piece.empty or not be.dev.host_visible:
        return slow
    step = sched.steps[0]
    pc, f = step.piece, step.piece.fold
    p = sched.params
    whole = (pc.ci1 - pc.ci0, pc.t1 - pc.t0, f.lb, f.lw, f.kb, f.kw) == (p.cig, p.l_out, 0, p.l_in, 0, p.k)
    if not whole or (p.epi.act and not sched.fused):
        return slow
    layout = schedule.x_layout(step, sched.algorithm, sched.choice)
    x_shape = (p.n, p.groups, p.cig, p.l_in)
    key = ("conv", sched.key)
    out_shape = (p.n, p.c_out, p.l_out)
    needs_finite = plan.needs_finite
    st = {"rec": None, "dev": None, "calls": 0, "owner": None}

    def run(x, weights):
        check_result = be.check_result(plan, weights)
        if needs_finite and not check_result and not weights.finite:
            return slow(x, weights)
        dev = be.dev
        with dev.lock:
            rec = st["rec"]
            if rec is None or not rec.alive or st["dev"] is not dev or dev.closed or st["owner"] != be.owner(weights):
                out = slow(x, weights)
                st["owner"] = be.owner(weights)
                rec = dev.plans.get(key + (st["owner"], be.collect_timestamps))
                if rec is not None:
                    t = rec.tensors
                    res = t["out16"].data().view(np.float16) if sched.out_half else t["out"].data()
                    st.update(rec=rec, dev=dev, seqs=rec.seqs[id(rec.schedule.steps[0].dispatches)], t=t,
                              out=res[:p.n * p.c_out * p.l_out])
                return out
            st["calls"] += 1
            if st["calls"] % 16 == 0:
                dev.plans.move_to_end(key + (st["owner"], be.collect_timestamps))    # keep it recent in the LRU
            be.upload(st["t"]["x"], x.reshape(x_shape), layout=layout, storage=p.storage)
            be.put_weights(st["t"], step, sched, weights)
            for s in st["seqs"]:
                s.eval()
            out = st["out"].reshape(out_shape).copy()
        if check_result and not all_finite(out):
            return slow(x, weights)
        return out
    return run
