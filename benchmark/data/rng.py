"""Counter-based seeds and a tiny per-view random stream (SplitMix64).

Hand-written because the loader needs, for every view of every image, an
independent stream keyed by (seed, epoch, batch, position, view): seeding a
``torch.Generator`` and drawing a tensor from it costs ~30-40 us per view, more
than cropping a small image, while SplitMix64 in pure Python costs ~1 us per
number and is reproducible everywhere (any process, any worker count).
"""

from __future__ import annotations

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def splitmix64(z: int) -> int:
    """The SplitMix64 finaliser of ``z + golden ratio`` (a bijection of 64-bit integers)."""
    z = (z + _GOLDEN) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixing the integers ``parts`` (order matters)."""
    h = 0
    for p in parts:
        h = splitmix64(h ^ (int(p) & _MASK64))
    return h >> 1


class SplitMix64:
    """A random stream from one seed; ``random()`` like :meth:`random.Random.random`."""

    __slots__ = ("state",)

    def __init__(self, seed: int):
        self.state = int(seed) & _MASK64

    def random(self) -> float:
        """Uniform float in [0, 1) with 53 random bits."""
        self.state = (self.state + _GOLDEN) & _MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return ((z ^ (z >> 31)) >> 11) * (1.0 / (1 << 53))
