"""Every vkconvt kernel compiled by real GPU compilers without a GPU (Mesa RADV's null device,
ACO): registers, spills, LDS and occupancy on AMD ISAs. specs.py is the one module that reads
vkconvt's internals; radv.py runs the compiler (isa_stats.c); report.py makes the table.
Run: python scripts/gpu_compile_report.py --help"""
