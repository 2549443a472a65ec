"""moevit.hw.perf: the accelerator-level cycle model (unit rate models + a DRAM model), the
resource estimate and the design-space sweep that picks the ``zcu104`` preset's parallelism,
and the CPU/GPU/FPGA latency and energy comparison (``moevit bench compare``).
"""
