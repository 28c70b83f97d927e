"""python -m vkconvt bench [SUITE]: vkconvt against its NumPy backend and PyTorch, case by case.

Suites (the SUITES table): `models`, the real layers of vkconvt/data/model_layers.json; five sweeps
that vary one dimension over powers of two; `matmul`; `quick`, a handful of small cases of each.
Every case runs on every implementation in the same process: vkconvt direct / gemm / auto on the
Vulkan device, the NumPy backend (the reference), PyTorch CPU float32 and, when CUDA is there,
PyTorch CUDA float32 with TF32 off and on.

Per case and implementation: one warm-up call whose result is checked against the NumPy backend
(finite and normalised MSE mean((a-b)^2)/mean(b^2) <= 1e-7), then timed calls (time.perf_counter;
median, min, std): at least 3, only 2 when one call takes longer than --budget seconds. The
Vulkan algorithms are timed last, interleaved (direct, gemm, auto, direct, ...), after a short
pause that lets the CPU libraries' spinning worker threads park. A wrong
result is a failure, never a time. Vulkan rows also carry the device time (Vulkan timestamps,
recorded in a pass of their own: the queries cost time), the gemm column buffer and the peak device
memory of that algorithm. PyTorch runs in a worker process of its own (torchproc.py).
Writes results.json (metadata + records), results.csv, summary.md and PNG plots to --out.
"""
