"""A device as the planner sees it: an immutable `DeviceProfile` (limits, kernel choice, cost model).

The planner reads a profile and returns a plan; backends execute plans and never plan; `tune`
measures, writes a new tuning file and the next profile loaded reflects it. A profile is made
once per device, driver and tuning file (`load`, keyed by those values), and settings overrides
(settings.py) make a new profile value (`current`), so every cache keyed on a profile is right
without invalidation. `for_limits` makes a profile for a device that is not here (a table of
published limits, RADV's null device): the planner and spec choice run on it without a device.

The first use of a GPU (device class "gpu") that has no tuning file (VKCONVT_TUNE, env.py): a
one-line `TuneHint` warning that `python -m vkconvt tune` measures it, or with VKCONVT_TUNE=auto a
quick tune there and then (saved like `tune`'s); once per device, driver and vkconvt version and
process. A failing automatic tune is reported and the shipped defaults are used: it never fails a call.
"""
import contextlib
import contextvars
import dataclasses
import os
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Optional

from . import costmodel, env, kernels, settings
from .kernels import device_class
from .schedule import Limits

__all__ = ["DeviceProfile", "current", "load", "for_limits", "device_class", "epoch", "TuneHint", "tuning",
           "register_auto_tune"]


class TuneHint(UserWarning):
    """The first use of a GPU with no tuning file: what `tune` would measure, or what VKCONVT_TUNE=auto did."""


@dataclass(frozen=True)
class DeviceProfile:
    index: Optional[int]                  # the Vulkan device index (None: a device not present)
    name: str
    device_class: str
    kernel_device: kernels.Device
    max_buffer_bytes: int
    choice_items: tuple                   # ((kernel op, ((kernel name, spec), ...)), ...)
    cost_items: tuple                     # (("vulkan", ((feature, seconds), ...)), ("numpy", ...))
    source: str = ""                      # where the choice and cost model came from
    tuned: bool = False                   # from `tune` on this device (else shipped defaults)
    device_local_bytes: int = 0
    describe: str = ""
    settings: tuple = ()                  # the overrides applied to it
    memory: str = "host"                  # where buffers live: "host" (host-visible) or "device" (staged)

    @property
    def limits(self):
        return Limits(self.max_buffer_bytes, self.kernel_device)

    @property
    def choice(self):
        return dict(self.choice_items)

    @property
    def cost(self):
        return {part: dict(coef) for part, coef in self.cost_items}

    def with_settings(self, overrides):
        """This profile with settings overrides applied (kernels, max_buffer_bytes, limits)."""
        if not overrides:
            return self
        ov = dict(overrides)
        prof = self
        if "limits" in ov:
            kdev = dataclasses.replace(prof.kernel_device, **dict(ov["limits"]))
            # the kernels that device runs: its class's defaults when the class changes, else the
            # current choice less what the new limits rule out (the portable kernels stay)
            base = None if kdev.device_class != prof.device_class else prof.choice
            choice = make_choice(kdev.device_class, kdev, base)
            prof = dataclasses.replace(prof, kernel_device=kdev, device_class=kdev.device_class,
                                       choice_items=_items(choice))
        if "max_buffer_bytes" in ov:
            prof = dataclasses.replace(prof, max_buffer_bytes=min(prof.max_buffer_bytes, ov["max_buffer_bytes"]))
        if "kernels" in ov:
            choice = prof.choice
            for op, entry in ov["kernels"]:
                choice[op] = (kernels.only(entry, prof.device_class) if isinstance(entry, str)
                              else tuple((n, kernels.KERNELS[n].make_spec(s)) for n, s in entry))
            prof = dataclasses.replace(prof, choice_items=_items(choice))
        return dataclasses.replace(prof, settings=overrides)


def _items(choice):
    return tuple(sorted((op, tuple((n, kernels.KERNELS[n].make_spec(s)) for n, s in entries))
                        for op, entries in choice.items()))


def _cost_items(coef):
    return tuple(sorted((part, tuple(sorted(c.items()))) for part, c in coef.items() if isinstance(c, dict)
                        and part in ("vulkan", "numpy", "defaults")))


def make_choice(device_class, kernel_device, tuned):
    """The kernels `tune` chose on this device (when its stored model has them and this device runs
    them), else the device class's defaults; the portable kernels stay as the fallback."""
    choice = kernels.default_choice(device_class)
    for op, entries in (tuned or {}).items():
        keep = tuple((n, kernels.KERNELS[n].make_spec(s)) for n, s in entries
                     if kernels.KERNELS[n].supported(kernel_device, kernels.KERNELS[n].make_spec(s)))
        if keep and op in choice:
            choice[op] = tuple(dict.fromkeys(keep + kernels.only(kernels.FALLBACK[op], device_class)))
    return choice


_loaded = {}
_lock = threading.Lock()
_epoch = [0]
_unused = set()            # keys of profiles no call has planned with yet (first_use pending)
_first_use_done = set()    # tuning-file paths (device, driver, version) hinted or auto-tuned in this process
_tuning = contextvars.ContextVar("vkconvt_tuning", default=False)


def epoch():
    """How many device profiles this process has loaded: a new tuning file makes a new profile, and
    the call cache keys on this count, so no call made under the old profile is reused."""
    return _epoch[0]


def load(info, first_use=False):
    """The profile of a present device (a vulkan.vkinfo.DeviceInfo): its limits, the tuned kernel
    choice and cost model where `tune` stored them for this device, driver and version, else the
    shipped defaults. Cached per device and tuning file (its path, size and modification time).
    first_use: a call is about to plan with it (current()): an untuned GPU's first use is handled
    (`first_use`): a hint, or the automatic tune whose profile is returned instead."""
    path = costmodel.cache_path(info)
    try:
        st = os.stat(path)
        stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
    except OSError:
        stamp = None
    key = (info, stamp)
    with _lock:
        prof = _loaded.get(key)
    if prof is not None:
        if first_use and _unused and key in _unused:
            _unused.discard(key)
            return on_first_use(info, prof)
        return prof
    data, src = costmodel.load(info, stamp)
    cls = device_class(info)
    kdev = kernels.device_of(info)
    tuned = costmodel.tuned_choice(data, kdev)
    prof = DeviceProfile(info.index, info.name, cls, kdev, info.max_storage_buffer_range,
                         _items(make_choice(cls, kdev, tuned)), _cost_items(data), src, src == path,
                         info.device_local_bytes, info.describe(),
                         memory="host" if info.type in ("cpu", "integrated-gpu") else "device")
    with _lock:
        if key not in _loaded:
            _loaded[key] = prof
            _epoch[0] += 1
            if not prof.tuned and cls == "gpu":
                _unused.add(key)
        prof = _loaded[key]
    if first_use and key in _unused:
        _unused.discard(key)
        return on_first_use(info, prof)
    return prof


@contextlib.contextmanager
def tuning():
    """Within the block (tune measuring a device), using an untuned device neither hints nor tunes."""
    token = _tuning.set(True)
    try:
        yield
    finally:
        _tuning.reset(token)


def on_first_use(info, prof):
    """A call's first use in this process of `prof`, the profile of a GPU with no tuning file: per
    VKCONVT_TUNE, a one-line hint ("hint", the default), nothing ("off"), or a quick tune now ("auto";
    the tuned profile is returned). A failing tune is reported and `prof` (the shipped defaults) kept."""
    if _tuning.get():
        return prof
    mode = env.tune_mode()
    path = costmodel.cache_path(info)
    with _lock:
        if mode == "off" or path in _first_use_done:
            return prof
        _first_use_done.add(path)
    if mode == "hint":
        warnings.warn(f"vkconvt: {info.name} has no tuning file, so its plans use the shipped GPU defaults; "
                      "`python -m vkconvt tune` measures this device (about a minute; VKCONVT_TUNE=auto "
                      "tunes on first use, VKCONVT_TUNE=off silences this)", TuneHint, stacklevel=2)
        return prof
    start = time.perf_counter()
    warnings.warn(f"vkconvt: VKCONVT_TUNE=auto: {info.name} has no tuning file; running a quick tune now "
                  f"(about a minute), to be saved in {path}", TuneHint, stacklevel=2)
    try:
        auto_tune(info, path)
        tuned = load(info)
        if not tuned.tuned:
            raise RuntimeError(f"the tuning file {path} it saved was not taken")
    except Exception as exc:  # a failing tune never fails the call
        warnings.warn(f"vkconvt: VKCONVT_TUNE=auto: the tune of {info.name} failed ({type(exc).__name__}: "
                      f"{exc}); going on with the shipped defaults", TuneHint, stacklevel=2)
        return prof
    warnings.warn(f"vkconvt: VKCONVT_TUNE=auto: tuned {info.name} in {time.perf_counter() - start:.0f} s; "
                  f"this and later processes plan with {path}", TuneHint, stacklevel=2)
    return tuned


_auto_tuner = []     # tune.py registers its quick tune here: this layer sits below tune and cannot import it


def register_auto_tune(fn):
    """fn(info, path): measure device `info` quickly and save its tuning file at path (tune.auto)."""
    _auto_tuner[:] = [fn]


def auto_tune(info, path):
    """The registered quick tune of `info`, saved at `path`, run in a fresh context (the caller's
    settings overrides do not steer the measurement)."""
    if not _auto_tuner:
        raise RuntimeError("no automatic tune is registered (vkconvt.tune was not imported)")
    contextvars.Context().run(_auto_tuner[0], info, path)


def current(info):
    """The profile of device `info` with the settings overrides in force (VKCONVT_MEMORY too); the
    first call to use an untuned GPU's profile gets a hint or an automatic tune (on_first_use)."""
    prof = load(info, first_use=True).with_settings(settings.current())
    memory = settings.get("memory") or env.memory_mode()
    return dataclasses.replace(prof, memory=memory) if memory and memory != prof.memory else prof


def for_limits(device_class="gpu", max_shared_bytes=49152, max_invocations=1024, subgroup_size=32,
               subgroup_ops=("basic", "vote", "arithmetic", "ballot", "shuffle", "shuffle_relative", "clustered",
                             "quad"), max_buffer_bytes=1 << 30, name="hypothetical", device_local_bytes=8 << 30):
    """A profile of a device that is not here, from its published limits, with the shipped defaults
    of its class (planning and spec choice need no device)."""
    kdev = kernels.Device(device_class, int(max_shared_bytes), int(max_invocations), int(subgroup_size),
                          tuple(subgroup_ops))
    data, src = costmodel.shipped("lavapipe" if device_class == "cpu" else "generic-gpu")
    return DeviceProfile(None, name, device_class, kdev, int(max_buffer_bytes),
                         _items(make_choice(device_class, kdev, None)), _cost_items(data), src, False,
                         int(device_local_bytes), f"{name} (limits only: {device_class})")
