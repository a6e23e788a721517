"""Counter-based random numbers: every draw of an episode a pure function of (seed, episode id, draw, element).

A batch of environments drawing from one `torch.Generator` gives environment b the numbers that happen to
follow those of environments 0..b-1, so an episode's traffic depends on how many environments run together
and in which slot it lands. Here each number is a hash instead: the splitmix64 finaliser of a counter made of
the seed, the episode id, the draw's number within the episode's start (0, 1, 2, ... in call order) and the
element's index within that draw. Episode k of seed s is then the same whatever the batch size, the slot and
the device (integer hashing is exact on CPU and CUDA alike), and it is still one batched tensor expression.

    draws = EpisodeDraws(seed=0, episodes=torch.tensor([0, 1, 2]))   # B = 3 episodes
    u = draws.rand((3, 20))        # (B, 20) uniforms in [0, 1); row b depends on (0, episodes[b]) only
    k = draws.randint(4, (3,))     # (B,) integers in [0, 4)

`GeneratorDraws` wraps a `torch.Generator` behind the same two methods, so code written against the draws
(`sim.scenario.initial_state`) takes either and a generator gives exactly the numbers it gave before.
"""

from __future__ import annotations

import math

import torch

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15  # splitmix64's increment (2^64 / golden ratio)
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
UNIFORM_BITS = 24  # float32 uniforms carry 24 random bits: exact, and never 1.0
DRAW_SHIFT = 32  # counter = draw << 32 | element: up to 2^32 elements per draw


def _signed(x: int) -> int:
    """A 64-bit pattern as the int64 value with the same bits."""
    x &= MASK64
    return x - (1 << 64) if x >> 63 else x


def _shr(x: torch.Tensor, n: int) -> torch.Tensor:
    """Logical right shift of int64 bit patterns (torch's `>>` on int64 is arithmetic: it copies the sign)."""
    return (x >> n) & ((1 << (64 - n)) - 1)


def mix64(x: torch.Tensor) -> torch.Tensor:
    """splitmix64's finaliser on int64 tensors (any shape): a bijection of 64-bit patterns, wrapping arithmetic."""
    x = (x ^ _shr(x, 30)) * _signed(MIX1)
    x = (x ^ _shr(x, 27)) * _signed(MIX2)
    return x ^ _shr(x, 31)


def mix64_int(x: int) -> int:
    """`mix64` of one Python integer (the reference the tensor version is tested against), as a 64-bit pattern."""
    x &= MASK64
    x = ((x ^ (x >> 30)) * MIX1) & MASK64
    x = ((x ^ (x >> 27)) * MIX2) & MASK64
    return x ^ (x >> 31)


class EpisodeDraws:
    """Uniform draws for B episodes, each row a function of (seed, its episode id, draw number, element) only.

    Args:
        seed: any integer (taken modulo 2^64).
        episodes: (B,) integer episode ids (>= 0), on the device the draws are made on.
    """

    def __init__(self, seed: int, episodes: torch.Tensor) -> None:
        self.device = episodes.device
        key = _signed(mix64_int(int(seed) + GOLDEN))
        self._base = mix64(episodes.to(torch.int64) * _signed(GOLDEN) + key)  # (B,) one stream per episode
        self._draw = 0

    @property
    def num_envs(self) -> int:
        return int(self._base.shape[0])

    def bits(self, shape: tuple[int, ...]) -> torch.Tensor:
        """(B, ...) int64 hashes of the next draw; shape[0] must be B. Element (b, j) (j the flat index of the
        trailing dimensions) depends on (seed, episodes[b], draw number, j) only."""
        B = self.num_envs
        if not shape or shape[0] != B:
            raise ValueError(f"draw shape {shape} must start with the number of episodes, {B}")
        n = math.prod(shape[1:])
        counter = torch.arange(n, device=self.device, dtype=torch.int64) + (self._draw << DRAW_SHIFT)
        self._draw += 1
        return mix64(self._base[:, None] ^ mix64(counter * _signed(GOLDEN))[None, :]).reshape(shape)  # (B, n)

    def rand(self, shape: tuple[int, ...]) -> torch.Tensor:
        """(B, ...) float32 uniforms in [0, 1) (multiples of 2^-24)."""
        return _shr(self.bits(shape), 64 - UNIFORM_BITS).to(torch.float32) * 2.0**-UNIFORM_BITS

    def randint(self, high: int, shape: tuple[int, ...]) -> torch.Tensor:
        """(B, ...) int64 uniform in [0, high)."""
        return (self.rand(shape) * high).long().clamp_max(high - 1)


class GeneratorDraws:
    """`EpisodeDraws`' methods on a `torch.Generator` (the numbers `torch.rand` / `torch.randint` give)."""

    def __init__(self, generator: torch.Generator, device: torch.device | str) -> None:
        self.generator, self.device = generator, torch.device(device)

    def rand(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator, device=self.device)

    def randint(self, high: int, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randint(0, high, shape, generator=self.generator, device=self.device)
