"""vkconvt: conv_transpose_1d with PyTorch semantics on any Vulkan GPU (and a NumPy reference)."""
from .api import ConvTranspose1d, col2im_1d, conv_transpose1d, matmul
from .backends import available
from .errors import BackendUnavailable, DeviceClosed, DeviceOutOfMemory, VkconvtMemoryError, WorkspaceTooSmall
from .params import ConvParams, output_length
from .planner import ConvPlan, plan, set_max_workspace_bytes, workspace_bytes
from .version import __version__

__all__ = ["conv_transpose1d", "ConvTranspose1d", "matmul", "col2im_1d", "plan", "ConvPlan", "workspace_bytes",
           "set_max_workspace_bytes", "available", "BackendUnavailable", "VkconvtMemoryError", "WorkspaceTooSmall",
           "DeviceOutOfMemory", "DeviceClosed", "ConvParams", "output_length", "__version__"]
