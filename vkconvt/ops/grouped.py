"""The host side every grouped 1-D op shares (conv_transpose1d, conv1d): x is (n, groups * cig,
l_in) and the result (n, groups * cog, l_out)."""
import numpy as np

from .. import activations


class GroupedIO:
    """The host side of an op whose x is (n, groups * cig, l_in) and result (n, groups * cog, l_out)."""

    def describe(self, p):
        return f"{self.name} {p.tag()}  ->  out ({p.n}, {p.c_out}, {p.l_out}), {p.flops / 1e6:.1f} MFLOP"

    def out_array(self, p, sched=None):
        half = sched is not None and sched.info.get("out_half")
        # zeros: calloc'd pages, so the outputs no input reaches (gaps of a huge stride) cost nothing
        return np.zeros((p.n, p.c_out, p.l_out), dtype=np.float16 if half else
                        np.float64 if p.storage == "float64" else np.float32)

    def bind(self, p, args, out):
        """The host views a schedule's transfers index: x and out per group."""
        return dict(args, x=args["x"].reshape(p.n, p.groups, p.cig, p.l_in),
                    out=out.reshape(p.n, p.groups, p.cog, p.l_out))

    def finish(self, sched, args, out):
        p = sched.params
        if p.epi.act and not sched.info.get("fused", True):
            activations.apply(out, p.epi, args["weights"].act_params)      # not fusable here: on the host
        return out
