"""The accelerators a plan's cost is estimated for: peak dense throughput per
precision, and the share of it a training job is assumed to reach.

Sources: NVIDIA's data sheets (H200 SXM 141 GB; A100 SXM 80 GB; V100 SXM2 32 GB),
dense figures (the sheets print the tensor-core rates "with sparsity", twice the
dense ones).

- fp32 is TF32 tensor-core throughput on A100 and H200: PyTorch lets cuDNN run
  fp32 convolutions in TF32 by default (``torch.backends.cudnn.allow_tf32``,
  which this harness leaves on), and the networks' FLOPs are nearly all
  convolutions. Where TF32 is switched off, plain fp32 runs at 67 (H200) and
  19.5 (A100) TFLOP/s, 7 to 8 times slower. V100 has no TF32: 15.7 TFLOP/s.
- bf16 and fp16 are the tensor-core rates. V100 has no bf16 tensor cores: bf16
  is counted at its fp32 rate.
- efficiency: the model FLOP utilisation assumed for training and evaluation
  alike (35%, a usual figure for convolutional networks of this size that are fed
  fast enough; ``plan --estimate --efficiency`` overrides it). ``perf --device
  cuda`` measures it on a real GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from benchmark.errors import ConfigError

TERA = 1e12


@dataclass(frozen=True)
class Device:
    name: str
    peak: dict[str, float]  # precision -> dense FLOP/s
    efficiency: float  # assumed model FLOP utilisation

    def throughput(self, precision: str, efficiency: Optional[float] = None) -> float:
        """FLOP/s a job of this precision is assumed to sustain."""
        if precision not in self.peak:
            raise ConfigError(f"precision: expected one of {', '.join(self.peak)}, got {precision!r}")
        return self.peak[precision] * (self.efficiency if efficiency is None else efficiency)


DEVICES: dict[str, Device] = {
    "h200": Device("NVIDIA H200 SXM", {"fp32": 494.7 * TERA, "bf16": 989.5 * TERA, "fp16": 989.5 * TERA}, 0.35),
    "a100": Device("NVIDIA A100 SXM", {"fp32": 156.0 * TERA, "bf16": 312.0 * TERA, "fp16": 312.0 * TERA}, 0.35),
    "v100": Device("NVIDIA V100 SXM2", {"fp32": 15.7 * TERA, "bf16": 15.7 * TERA, "fp16": 125.0 * TERA}, 0.35),
}
DEFAULT_DEVICE = "h200"


def device_peaks_for_name(name: str) -> dict[str, float]:
    """Peak FLOP/s per precision of the device torch names (``torch.cuda.get_device_name``),
    e.g. 'NVIDIA H200' -> the h200 entry; empty when the table does not know it."""
    for key, device in DEVICES.items():
        if key in name.lower():
            return dict(device.peak)
    return {}
