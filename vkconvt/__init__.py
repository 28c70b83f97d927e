"""vkconvt: conv_transpose_1d with PyTorch semantics on any Vulkan GPU (and a NumPy reference); conv1d and
the backward pass too."""
from . import settings
from .api import ConvTranspose1d, asarray, col2im_1d, conv_transpose1d, matmul, stats
from .api_grad import conv1d, conv_transpose1d_backward, plan_conv1d
from .backends import available
from .calls import Pending, trace
from .errors import (AlgorithmUnavailable, BackendUnavailable, DeviceClosed, DeviceOutOfMemory, VkconvtMemoryError,
                     WorkspaceTooSmall)
from .params import ConvParams, output_length
from .planner import ConvPlan, Plan, plan, workspace_bytes
from .settings import set_max_workspace_bytes
from . import tune as _tune  # noqa: F401  (registers VKCONVT_TUNE=auto's quick tune with profile)
from .version import __version__
from .vulkan.arrays import DeviceArray

__all__ = ["conv_transpose1d", "ConvTranspose1d", "conv1d", "conv_transpose1d_backward", "plan_conv1d", "matmul",
           "col2im_1d", "asarray", "DeviceArray", "Pending", "stats", "trace", "settings", "plan", "Plan", "ConvPlan",
           "workspace_bytes", "set_max_workspace_bytes", "available", "AlgorithmUnavailable", "BackendUnavailable",
           "VkconvtMemoryError", "WorkspaceTooSmall", "DeviceOutOfMemory", "DeviceClosed", "ConvParams", "output_length",
           "__version__"]
