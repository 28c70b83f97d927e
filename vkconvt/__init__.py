"""vkconvt: conv_transpose_1d with PyTorch semantics on any Vulkan GPU (and a NumPy reference)."""
from .api import col2im_1d, conv_transpose1d, matmul
from .backends import BackendUnavailable, available
from .params import ConvParams, output_length

__version__ = "0.1.0"
__all__ = ["conv_transpose1d", "matmul", "col2im_1d", "available", "BackendUnavailable", "ConvParams",
           "output_length", "__version__"]
