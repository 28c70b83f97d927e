"""A model users recognise: the HiFi-GAN V1 generator, in PyTorch, with random weights.

    model = hifigan_v1()                 # jik876/hifi-gan models.py Generator with config_v1.json
    rc = run_hifigan_demo()              # PyTorch alone vs converted by vkconvt.torch; prints both

The architecture follows the published code (jik876/hifi-gan, models.py, Generator + ResBlock1)
with config_v1: upsample_rates [8, 8, 2, 2], upsample_kernel_sizes [16, 16, 4, 4],
upsample_initial_channel 512, resblock "1" with kernel sizes [3, 7, 11] and dilations [1, 3, 5],
conv_pre Conv1d(80, 512, 7, padding=3), leaky ReLU 0.1, conv_post Conv1d(32, 1, 7, padding=3),
tanh, weight_norm on every convolution (torch.nn.utils.weight_norm hooks, as in the original,
so that released checkpoints' weight_g/weight_v keys would load). Nothing is downloaded: weights
are drawn from N(0, 0.01), as the original's init_weights intends, with a fixed seed.
"""
import math
import statistics
import time
import warnings

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError as exc:
    raise ImportError("vkconvt.torch_models needs PyTorch, which is not installed here: pip install torch "
                      "(or pip install 'vkconvt[torch]')") from exc

import vkconvt

from . import torch as vktorch

LRELU_SLOPE = 0.1
SAMPLE_RATE = 22050
CONFIG_V1 = dict(resblock_kernel_sizes=[3, 7, 11], resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5], [1, 3, 5]],
                 upsample_rates=[8, 8, 2, 2], upsample_kernel_sizes=[16, 16, 4, 4], upsample_initial_channel=512,
                 num_mels=80)


def get_padding(kernel_size, dilation=1):
    return (kernel_size * dilation - dilation) // 2


def _wn(conv, weight_norm):
    """Initialise as init_weights intends, then weight-normalise (hooks or parametrization)."""
    with torch.no_grad():
        conv.weight.normal_(0.0, 0.01)
    if weight_norm == "parametrizations":
        return nn.utils.parametrizations.weight_norm(conv)
    with warnings.catch_warnings():     # deprecated in favour of parametrizations, but what HiFi-GAN uses
        warnings.simplefilter("ignore", FutureWarning)
        return nn.utils.weight_norm(conv)


class ResBlock1(nn.Module):
    def __init__(self, channels, kernel_size=3, dilation=(1, 3, 5), weight_norm="hooks"):
        super().__init__()
        self.convs1 = nn.ModuleList(
            _wn(nn.Conv1d(channels, channels, kernel_size, 1, dilation=d, padding=get_padding(kernel_size, d)),
                weight_norm) for d in dilation)
        self.convs2 = nn.ModuleList(
            _wn(nn.Conv1d(channels, channels, kernel_size, 1, dilation=1, padding=get_padding(kernel_size, 1)),
                weight_norm) for _ in dilation)

    def forward(self, x):
        for c1, c2 in zip(self.convs1, self.convs2):
            xt = c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
            x = xt + x
        return x


class Generator(nn.Module):
    """HiFi-GAN generator (jik876/hifi-gan models.py) with resblock "1"."""

    def __init__(self, resblock_kernel_sizes, resblock_dilation_sizes, upsample_rates, upsample_kernel_sizes,
                 upsample_initial_channel, num_mels=80, weight_norm="hooks"):
        super().__init__()
        self.num_kernels = len(resblock_kernel_sizes)
        self.num_upsamples = len(upsample_rates)
        self.conv_pre = _wn(nn.Conv1d(num_mels, upsample_initial_channel, 7, 1, padding=3), weight_norm)
        self.ups = nn.ModuleList()
        for i, (u, k) in enumerate(zip(upsample_rates, upsample_kernel_sizes)):
            self.ups.append(_wn(nn.ConvTranspose1d(upsample_initial_channel // (2 ** i),
                                                   upsample_initial_channel // (2 ** (i + 1)), k, u,
                                                   padding=(k - u) // 2), weight_norm))
        self.resblocks = nn.ModuleList()
        for i in range(len(self.ups)):
            ch = upsample_initial_channel // (2 ** (i + 1))
            for k, d in zip(resblock_kernel_sizes, resblock_dilation_sizes):
                self.resblocks.append(ResBlock1(ch, k, d, weight_norm))
        self.conv_post = _wn(nn.Conv1d(ch, 1, 7, 1, padding=3), weight_norm)

    def forward(self, x):
        x = self.conv_pre(x)
        for i in range(self.num_upsamples):
            x = F.leaky_relu(x, LRELU_SLOPE)
            x = self.ups[i](x)
            xs = None
            for j in range(self.num_kernels):
                r = self.resblocks[i * self.num_kernels + j](x)
                xs = r if xs is None else xs + r
            x = xs / self.num_kernels
        x = F.leaky_relu(x)     # default slope 0.01, as in the original
        x = self.conv_post(x)
        return torch.tanh(x)


def hifigan_v1(seed=0, weight_norm="hooks", config=None):
    """The HiFi-GAN V1 generator (about 14 M parameters) with random weights, in eval mode
    (config: another Generator configuration, e.g. a small one for tests)."""
    torch.manual_seed(seed)
    return Generator(**(config or CONFIG_V1), weight_norm=weight_norm).eval()


def _timed(model, mel, repeat):
    times, out = [], None
    with torch.inference_mode():
        model(mel)      # warm-up: builds device pipelines and uploads weights once
        for _ in range(max(1, repeat)):
            t0 = time.perf_counter()
            out = model(mel)
            times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def run_hifigan_demo(device=None, algorithm="auto", seconds=1.0, repeat=3, backend=None, tolerance=1e-8,
                     config=None):
    """Run `seconds` of 22.05 kHz mel frames (80 x 86 per second) through HiFi-GAN V1 with PyTorch
    alone and with its ConvTranspose1d layers converted by vkconvt; print the differences and the
    time per second of audio. Returns 0 if the outputs agree (nMSE <= tolerance), else 1.
    config: a Generator configuration other than V1 (the tests use a small one).

    Tolerance: each converted layer matches PyTorch to float32 rounding (nMSE ~1e-14, the per-layer
    target is 1e-10); through 4 upsampling stages, 36 residual convolutions and a tanh those
    differences grow but stay many orders of magnitude below 1e-8, while a wrong tap, offset or
    channel gives an nMSE of 1e-3 or more.
    """
    cfg = config or CONFIG_V1
    hop = math.prod(cfg["upsample_rates"])            # 256 for V1: 86 frames per second at 22.05 kHz
    frames = max(1, round(seconds * SAMPLE_RATE / hop))
    model = hifigan_v1(config=config)
    num_mels = cfg["num_mels"]
    mel = torch.randn(1, num_mels, frames, generator=torch.Generator().manual_seed(1))
    converted = vktorch.convert(model, device=device, algorithm=algorithm, backend=backend)
    ups = [(tuple(m.weight.shape), m.stride[0], m.padding[0]) for m in model.ups]
    plan = vkconvt.plan((1,) + ups[0][0][:1] + (frames,), ups[0][0], ups[0][1], ups[0][2], bias=True,
                        algorithm=algorithm, backend=backend, device=device)
    where = plan.backend + (f" on {plan.device}" if plan.device else "")
    name = "HiFi-GAN V1 generator (jik876/hifi-gan config_v1" if config is None else "HiFi-GAN generator (custom config"
    print(f"{name}, random weights, weight norm), "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters")
    print(f"input: mel (1, {num_mels}, {frames}) = {frames * hop / SAMPLE_RATE:.2f} s of {SAMPLE_RATE} Hz audio; "
          f"{len(ups)} ConvTranspose1d layers converted: " + ", ".join(f"{w} s{s} p{p}" for w, s, p in ups))
    print(f"vkconvt: {where}, algorithm={algorithm}")
    ref, t_ref = _timed(model, mel, repeat)
    out, t_vk = _timed(converted, mel, repeat)
    audio_s = ref.shape[-1] / SAMPLE_RATE
    diff = (out.double() - ref.double()).abs()
    nmse = float((diff ** 2).mean() / (ref.double() ** 2).mean())
    rel = float(diff.max() / ref.double().abs().max())
    print(f"output: {tuple(out.shape)} = {audio_s:.2f} s of audio")
    print(f"max |vkconvt - torch| = {float(diff.max()):.3e}   relative (to max |torch|) = {rel:.3e}   "
          f"nMSE = {nmse:.3e}")
    print(f"time per second of audio (median of {max(1, repeat)}): PyTorch {t_ref / audio_s:.3f} s   "
          f"converted {t_vk / audio_s:.3f} s")
    ok = bool(torch.isfinite(out).all()) and nmse <= tolerance
    print(f"result: {'outputs agree' if ok else 'MISMATCH'} (nMSE {nmse:.2e} {'<=' if ok else '>'} {tolerance:g})")
    return 0 if ok else 1
