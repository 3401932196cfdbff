"""GoogLeNet as defined in Caffe's model zoo (``bvlc_googlenet``), the network ABE used.

ABE (Sec. 4: "We implement the proposed ABE-M method using caffe") was built on
the BVLC GoogLeNet, which differs from torchvision's port
(:mod:`benchmark.models.googlenet`) in three ways that matter for Table 1 and
for loading its weights:

- the third branch of every inception block is a 5x5 convolution (pad 2), where
  torchvision's port has a 3x3;
- no batch normalisation: every convolution has a bias and is followed by an
  in-place ReLU;
- local response normalisation (across channels, local_size 5, alpha 1e-4,
  beta 0.75, k 1) after pool1 and after conv2/3x3; every max pool (3x3/2,
  pool4 included, where torchvision has 2x2/2) rounds up like Caffe
  (``ceil_mode=True``); the inception blocks' pool branch is a 3x3/1 max pool,
  pad 1.

Layers, kernel sizes, strides, pads and widths are those of
``models/bvlc_googlenet/deploy.prototxt``. The network is an ``nn.Sequential``
whose children carry torchvision's stage names (:data:`STAGE_NAMES`), so ABE's
S/C/G cuts, the M-heads and the embedding backbone treat both networks alike:

    stage        Caffe layers inside it
    conv1        conv1/7x7_s2 (64, 7x7/2, pad 3), ReLU
    maxpool1     pool1/3x3_s2, pool1/norm1 (LRN)
    conv2        conv2/3x3_reduce (64, 1x1), ReLU
    conv3        conv2/3x3 (192, 3x3, pad 1), ReLU, conv2/norm2 (LRN)
    maxpool2     pool2/3x3_s2
    inception3a  inception_3a/{1x1, 3x3_reduce, 3x3, 5x5_reduce, 5x5, pool, pool_proj}
    inception3b  ...
    maxpool3     pool3/3x3_s2
    inception4a .. inception4e
    maxpool4     pool4/3x3_s2
    inception5a, inception5b

The classifier head (pool5/7x7_s1, dropout, loss3/classifier) and the auxiliary
classifiers (loss1/*, loss2/*) are not part of the backbone: the users add
global average pooling and their own embedding layer.

State-dict keys. Each Caffe layer with weights is an ``nn.Conv2d`` named after
the Caffe layer with '/' and '-' mapped to '_' (:func:`caffe_key`), inside its
stage: the module key is ``<stage>.<caffe key>.<weight|bias>``, e.g.
``conv1.conv1_7x7_s2.weight``, ``inception3a.inception_3a_5x5.bias``. A
converted weights file drops the stage: its keys are ``conv1_7x7_s2.weight``,
``inception_3a_5x5.bias``, ... (:func:`file_key`; loading:
:mod:`benchmark.models.pretrained`). A file converted with pycaffe has this
layout when written as::

    {caffe_key(name) + ".weight": torch.from_numpy(blobs[0].data.copy()),
     caffe_key(name) + ".bias": torch.from_numpy(blobs[1].data.copy())
     for name, blobs in net.params.items()}

(Caffe stores convolution weights as (out, in, kh, kw), like PyTorch). The BVLC
weights expect BGR images in 0-255 minus the mean (104, 117, 123)
(train_val.prototxt's mean_value): :func:`benchmark.models.normalize.caffe_bvlc`.

Random initialisation (used only when training from scratch: the smoke model,
or ``pretrained: false``) is He's (normal, fan_in, ReLU gain) with zero biases,
NOT the prototxt's fillers ("xavier", i.e. uniform in +-sqrt(3 / fan_in), and
constant 0.2 biases), which were made for ImageNet training with auxiliary
classifiers. Without batch normalisation the 0.2 biases, summed over the depth,
swamp the input: at initialisation the tiny network embeds all images almost
alike (pairwise distances ~1% of the embedding norm), and a smoke ABE-8 run
stalls for its first iterations. Smaller scales (PyTorch's default, Glorot) let the
signal vanish (the loss never moves). He's keeps the activations' variance
through the ReLUs and trains at once. Like any BN-free network it needs a
smaller step than the BN networks: the smoke profile's SGD lr 5e-3 (set for
``tiny_googlenet``) diverges within a round; 1e-3 trains.

``tiny_bvlc_googlenet`` (the smoke model) is the same network with every width
divided by 8. Inputs must be at least 31 px: smaller images leave pool4 (3x3/2,
unpadded, as in Caffe) a 1x1 map it cannot pool.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.models.googlenet import INCEPTION_CHANNELS, STAGE_NAMES

# Caffe's lrn_param of pool1/norm1 and conv2/norm2 (k = 1, Caffe's default).
LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, 1e-4, 0.75, 1.0


def caffe_key(layer_name: str) -> str:
    """A Caffe layer name as a module name: 'inception_3a/5x5' -> 'inception_3a_5x5'."""
    return layer_name.replace("/", "_").replace("-", "_")


def file_key(module_key: str) -> str:
    """The converted file's key for a backbone key: the stage name dropped.

    'inception3a.inception_3a_5x5.weight' -> 'inception_3a_5x5.weight'.
    """
    return module_key.split(".", 1)[1]


def init_conv_(conv: nn.Conv2d) -> None:
    """From-scratch initialisation: He normal (fan_in, ReLU) weights, zero bias (see the module docstring)."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
    nn.init.zeros_(conv.bias)


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, pad: int = 0) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=pad)
    init_conv_(conv)
    return conv


def _relu() -> nn.ReLU:
    return nn.ReLU(inplace=True)  # Caffe's ReLU layers work in place (top = bottom)


def _lrn() -> nn.LocalResponseNorm:
    # PyTorch's LRN is Caffe's ACROSS_CHANNELS LRN: x / (k + alpha/n * sum x^2)^beta.
    return nn.LocalResponseNorm(LRN_SIZE, alpha=LRN_ALPHA, beta=LRN_BETA, k=LRN_K)


def _max_pool(stride: int = 2, pad: int = 0) -> nn.MaxPool2d:
    return nn.MaxPool2d(3, stride=stride, padding=pad, ceil_mode=True)  # Caffe rounds up


def _stage(*layers: tuple[str, nn.Module], out_channels: int | None = None) -> nn.Sequential:
    """A stem or pooling stage: Caffe's (layer name, layer) in order, under their Caffe names.

    ``out_channels`` (stages with a convolution) is read by
    :func:`benchmark.models.googlenet.stage_out_channels`.
    """
    stage = nn.Sequential(OrderedDict((caffe_key(name), layer) for name, layer in layers))
    if out_channels is not None:
        stage.out_channels = out_channels
    return stage


class CaffeInception(nn.Module):
    """One BVLC inception block: four branches, ReLU after every convolution,
    concatenated as 1x1, 3x3, 5x5, pool_proj (the prototxt's Concat order)."""

    def __init__(
        self, block: str, cin: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int, pool_proj: int
    ) -> None:
        super().__init__()
        self.prefix = f"inception_{block}_"
        p = self.prefix
        # Registration order = the prototxt's layer order (fixes the order of
        # the random initialisation, and of the parameters).
        self.add_module(p + "1x1", _conv(cin, ch1x1, 1))
        self.add_module(p + "3x3_reduce", _conv(cin, ch3x3red, 1))
        self.add_module(p + "3x3", _conv(ch3x3red, ch3x3, 3, pad=1))
        self.add_module(p + "5x5_reduce", _conv(cin, ch5x5red, 1))
        self.add_module(p + "5x5", _conv(ch5x5red, ch5x5, 5, pad=2))
        self.add_module(p + "pool", _max_pool(stride=1, pad=1))
        self.add_module(p + "pool_proj", _conv(cin, pool_proj, 1))
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def _conv_relu(self, layer: str, x: torch.Tensor) -> torch.Tensor:
        return F.relu(getattr(self, self.prefix + layer)(x), inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = getattr(self, self.prefix + "pool")(x)
        return torch.cat(
            [
                self._conv_relu("1x1", x),
                self._conv_relu("3x3", self._conv_relu("3x3_reduce", x)),
                self._conv_relu("5x5", self._conv_relu("5x5_reduce", x)),
                self._conv_relu("pool_proj", pooled),
            ],
            dim=1,
        )


def bvlc_googlenet_stages(width_divisor: int = 1) -> nn.Sequential:
    """BVLC GoogLeNet's stages (see the module docstring), widths / ``width_divisor``.

    The inception widths are GoogLeNet's (Szegedy et al. 2015, Table 1), the
    same table torchvision's port uses (:data:`INCEPTION_CHANNELS`, whose
    "5x5" columns are BVLC's 5x5 branch).
    """
    d = width_divisor

    def w(c: int) -> int:
        if c % d:
            raise ValueError(f"GoogLeNet width {c} is not divisible by {d}")
        return c // d

    stages: OrderedDict[str, nn.Module] = OrderedDict()
    stages["conv1"] = _stage(
        ("conv1/7x7_s2", _conv(3, w(64), 7, stride=2, pad=3)), ("conv1/relu_7x7", _relu()), out_channels=w(64)
    )
    stages["maxpool1"] = _stage(("pool1/3x3_s2", _max_pool()), ("pool1/norm1", _lrn()))
    stages["conv2"] = _stage(
        ("conv2/3x3_reduce", _conv(w(64), w(64), 1)), ("conv2/relu_3x3_reduce", _relu()), out_channels=w(64)
    )
    stages["conv3"] = _stage(  # torchvision's conv3 is Caffe's conv2/3x3
        ("conv2/3x3", _conv(w(64), w(192), 3, pad=1)),
        ("conv2/relu_3x3", _relu()),
        ("conv2/norm2", _lrn()),
        out_channels=w(192),
    )
    channels = w(192)
    for name in STAGE_NAMES[4:]:
        if name.startswith("maxpool"):  # maxpool2 (pool2) .. maxpool4 (pool4): all 3x3/2
            stages[name] = _stage((f"pool{name[-1]}/3x3_s2", _max_pool()))
        else:
            block = CaffeInception(name[len("inception"):], channels, *(w(c) for c in INCEPTION_CHANNELS[name]))
            stages[name] = block
            channels = block.out_channels
    net = nn.Sequential(stages)
    net.out_channels = channels
    return net
