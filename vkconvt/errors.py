"""Exceptions raised by vkconvt beyond plain TypeError/ValueError."""


class VkconvtMemoryError(MemoryError):
    """An algorithm could not run within the memory it has; .needed_bytes and .budget_bytes say
    how much it wanted and what it had (None where unknown)."""

    def __init__(self, message, needed_bytes=None, budget_bytes=None):
        super().__init__(message)
        self.needed_bytes = needed_bytes
        self.budget_bytes = budget_bytes


class WorkspaceTooSmall(VkconvtMemoryError):
    """The workspace budget is smaller than the least the chosen algorithm needs."""


class AlgorithmUnavailable(ValueError):
    """An algorithm cannot compute this problem (e.g. its indices would not fit the shaders' 32 bits);
    algorithm='auto' leaves it out, a request for it raises this."""


class DeviceOutOfMemory(VkconvtMemoryError):
    """The device could not allocate a buffer."""


class BackendUnavailable(ImportError):
    """A backend that cannot start here; .backend and .reason say which and why."""

    def __init__(self, backend, reason):
        super().__init__(f"backend {backend!r} is unavailable: {reason}")
        self.backend = backend
        self.reason = reason


class DeviceClosed(RuntimeError):
    """The Vulkan device was closed (at interpreter exit, or by Device.close()); no more work runs on it."""
