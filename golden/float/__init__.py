"""moevit.golden.float: the float PyTorch reference of M³ViT (model, checkpoint import/export,
the float model run in the accelerator's stage order)."""
