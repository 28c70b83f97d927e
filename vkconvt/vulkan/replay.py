"""Replaying a recorded call with the least host work: a layer's repeated call on host arrays.

A layer object (api.ConvTranspose1d) that has run a shape once, or a function call repeated exactly,
asks `replayer` for a Replay of that call's recording: the step's one recorded sequence, the bound
row transfers of x and the result, the tags a layer's kept weights must still carry on the device
(a function's one-off weights are packed in each call, as the full path packs them). Replay(x4, out4) then does only what
execute.run would do for that call (write x's rows, submit and wait once, read the result's rows,
count it all in the device's counters) and returns False, doing nothing, wherever execute.run would
do more: the device closed, forked or busy, the recording evicted, the weights' buffers no longer
holding this layer's weights. The caller then takes the full path. Eligible: a schedule of one
step with dispatches, host arrays in and out, a submission that is waited for, no timestamps.
"""
import os
import weakref

from .execute import read_rows, step_io, step_sequence, view, write_rows


class Replay:
    """Holds no buffer: the recording weakly, its transfers and sequence looked up in it per call (an
    evicted recording frees its buffers while the layer lives on)."""
    __slots__ = ("dev", "rec", "key", "seq_key", "writes", "packs", "tags", "up", "down", "dispatches")

    def __init__(self, dev, rec, key, seq_key, writes, packs, tags, up, down, dispatches):
        self.dev, self.rec, self.key, self.seq_key = dev, weakref.ref(rec), key, seq_key
        self.writes, self.packs, self.tags = writes, packs, tags
        self.up, self.down, self.dispatches = up, down, dispatches

    def __call__(self, args):
        """Run the call on `args` (the op's bound host arrays by name); False: not run (take the full path)."""
        dev, rec = self.dev, self.rec()
        with dev.lock:
            if (rec is None or dev.closed or dev.in_flight is not None or dev.pid != os.getpid() or not rec.alive
                    or dev.recordings.get(self.key) is not rec):
                return False
            io, seq = rec.io.get(0), rec.seqs.get(self.seq_key)
            if io is None or seq is None:
                return False
            tags = dev.tags
            for tid, tag in self.tags:
                if tags.get(tid) != tag:
                    return False
            ups, downs = io
            for j in self.writes:
                t, bound = ups[j]
                write_rows(dev, bound, args[t.name])
            for j in self.packs:                        # one-off weights: packed as the full path packs them
                t = ups[j][0]
                t.pack(view(rec, t.role, t.dtype), args)
                tags[id(rec.tensors[t.role])] = None
            c = dev.counters
            c["bytes_up"] += self.up
            c["bytes_down"] += self.down
            c["dispatches"] += self.dispatches
            c["submissions"] += 1
            seq.eval()                                  # submit, and wait for the fence (GIL released)
            c["fence_waits"] += 1
            for t, bound in downs:
                read_rows(bound, args[t.name])
        return True


def replayer(dev, sched, args, mode):
    """A Replay of `sched` as execute.run last ran it for `args` ("weights" and "owner": what names the
    weights' buffers), or None where the call is not eligible or was not recorded."""
    if len(sched.steps) != 1 or not sched.steps[0].dispatches:
        return None
    key = (id(sched), mode, args.get("owner"), False)
    rec = dev.recordings.get(key)
    if rec is None or not rec.alive or rec.sched is not sched:
        return None
    st = sched.steps[0]
    ups, downs = step_io(rec, 0, st)
    writes, packs, tags, up, staged_up, staged_down = [], [], [], 0, [], []
    for j, (t, bound) in enumerate(ups):
        if bound is None:                       # a kernel's own layout: kept (tagged) or packed per call
            tag = t.tag(args) if t.tag is not None else None
            if tag is not None:
                tags.append((id(rec.tensors[t.role]), tag))
                continue
            packs.append(j)
        else:
            writes.append(j)
        up += t.nbytes
        if mode == "device":
            staged_up.append((t.role, t.nbytes))
    down = 0
    for t, bound in downs:
        down += t.nbytes
        if mode == "device":
            staged_down.append((t.role, t.nbytes))
    variant = (tuple(staged_up), (), tuple(staged_down), ())
    step_sequence(dev, rec, 0, variant, {})
    return Replay(dev, rec, key, (0, variant), tuple(writes), tuple(packs), tuple(tags), up, down,
                  len(st.dispatches))
