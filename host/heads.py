"""Task heads on the host: the encoder output -> a segmentation map or a depth map.

The accelerator returns the residual stream after the last block (``x``, [N][T][D] fm_t).  The
float model's SETR-PUP heads (:class:`moevit.golden.float.model.PUPHead`, one per task) turn it
into a prediction at the input resolution, exactly as ``FloatM3ViT.forward`` does.  Edge-MoE
ships no head weights: the heads come from an M³ViT checkpoint (``checkpoint=``), else they
keep a seeded initialisation and the pictures only show that the plumbing works
(:attr:`TaskHeads.trained` says which).  Needs torch (not on the board: run heads on a PC or
skip them there).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moevit.config import AcceleratorConfig
from moevit.golden.fixed import to_float

#: colours of segmentation classes (cycled), RGB
PALETTE = np.array([[128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156],
                    [190, 153, 153], [153, 153, 153], [250, 170, 30], [220, 220, 0],
                    [107, 142, 35], [152, 251, 152], [70, 130, 180], [220, 20, 60]], np.uint8)


class TaskHeads:
    """The PUP heads of every task of ``cfg`` (see module docstring)."""

    def __init__(self, cfg: AcceleratorConfig, *, checkpoint=None, seed: int = 0):
        import torch
        from moevit.golden.float.model import FloatConfig, FloatM3ViT
        self.cfg = cfg
        self.fcfg = FloatConfig.from_accel(cfg)
        torch.manual_seed(seed)
        model = FloatM3ViT(self.fcfg, heads=True)
        self.trained = False
        if checkpoint is not None:
            from moevit.golden.float.checkpoint import load_m3vit_checkpoint
            report = load_m3vit_checkpoint(model, checkpoint, strict_backbone=False)
            self.trained = any(k.startswith("decoders.") for k in report.loaded)
        self.decoders = model.decoders.eval()
        self.tasks = self.fcfg.tasks

    def predict(self, features_raw: np.ndarray, task: int) -> np.ndarray:
        """Raw fm_t features [N][T][D] -> prediction float32 [N][C_out][H][W]."""
        import torch
        import torch.nn.functional as F
        name = self.tasks[task][0]
        x = torch.as_tensor(to_float(features_raw, self.cfg.formats.fm), dtype=torch.float32)
        with torch.no_grad():
            p = self.decoders[name](x)
            p = F.interpolate(p, size=(self.cfg.image_height, self.cfg.image_width),
                              mode="bilinear", align_corners=False)
        return p.numpy()

    def picture(self, prediction: np.ndarray, task: int) -> np.ndarray:
        """One prediction [C_out][H][W] -> an RGB (segmentation: class colours) or grey (depth
        and other 1-channel tasks: min..max stretched) uint8 picture."""
        if prediction.shape[0] > 1:
            return PALETTE[np.argmax(prediction, axis=0) % len(PALETTE)]
        d = prediction[0]
        lo, hi = float(d.min()), float(d.max())
        return np.zeros(d.shape, np.uint8) if hi <= lo else \
            np.round(255 * (d - lo) / (hi - lo)).astype(np.uint8)

    def save(self, prediction: np.ndarray, task: int, path) -> Path:
        from PIL import Image
        path = Path(path)
        Image.fromarray(self.picture(prediction, task)).save(path)
        return path
