"""moevit.hw.top: accelerator top level."""
