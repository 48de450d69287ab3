"""Condition-monitoring features of one window of multichannel samples, vectorised over channels.

Every function takes ``x`` of shape ``(channels, samples)`` (float) and returns one value per channel,
so a window of any number of channels costs a handful of numpy calls. Conventions follow the usual
vibration-analysis definitions:

* ``rms`` is the root mean square of the raw signal (a sine of amplitude ``A`` has RMS ``A/sqrt(2)``);
* ``peak`` is the largest absolute value, ``crest`` = peak / RMS (``sqrt(2)`` for a sine);
* ``kurtosis`` is Pearson's (not excess) kurtosis of the de-meaned signal: 3 for Gaussian noise,
  1.5 for a sine, large for impulsive signals (bearing spalls, gear tooth cracks);
* ``skewness`` is the third standardised moment;
* band energies are the mean-square power in ``[f_lo, f_hi)`` from a one-sided FFT power spectrum
  normalised so that the bands of a full partition add up to the signal's mean square (Parseval);
* the envelope spectrum is the amplitude spectrum of the Hilbert envelope, where bearing defect
  frequencies show up as lines even when the raw spectrum is dominated by resonances.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

_EPS = 1e-12


def mean(x: FloatArray) -> FloatArray:
    """Arithmetic mean per channel (the level of a process variable)."""
    return np.asarray(x.mean(axis=-1), dtype=np.float64)


def std(x: FloatArray) -> FloatArray:
    """Population standard deviation per channel (the fluctuation around the level)."""
    return np.asarray(x.std(axis=-1), dtype=np.float64)


def rms(x: FloatArray) -> FloatArray:
    """Root mean square per channel."""
    return np.asarray(np.sqrt(np.mean(np.square(x), axis=-1)), dtype=np.float64)


def peak(x: FloatArray) -> FloatArray:
    """Largest absolute value per channel."""
    return np.asarray(np.max(np.abs(x), axis=-1), dtype=np.float64)


def peak_to_peak(x: FloatArray) -> FloatArray:
    """Max minus min per channel."""
    return np.asarray(np.ptp(x, axis=-1), dtype=np.float64)


def crest_factor(x: FloatArray) -> FloatArray:
    """Peak / RMS per channel (0 for an all-zero channel)."""
    r = rms(x)
    return np.where(r > _EPS, peak(x) / np.maximum(r, _EPS), 0.0)


def _central_moments(x: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    d = x - x.mean(axis=-1, keepdims=True)
    d2 = np.square(d)
    m2 = d2.mean(axis=-1)
    m3 = (d2 * d).mean(axis=-1)
    m4 = np.square(d2).mean(axis=-1)
    return m2, m3, m4


def kurtosis(x: FloatArray) -> FloatArray:
    """Pearson kurtosis per channel (3 for Gaussian noise); 0 for a constant channel."""
    m2, _, m4 = _central_moments(x)
    return np.where(m2 > _EPS, m4 / np.maximum(np.square(m2), _EPS), 0.0)


def skewness(x: FloatArray) -> FloatArray:
    """Third standardised moment per channel; 0 for a constant channel."""
    m2, m3, _ = _central_moments(x)
    return np.where(m2 > _EPS, m3 / np.maximum(m2, _EPS) ** 1.5, 0.0)


def power_spectrum(x: FloatArray, sample_rate_hz: float) -> tuple[FloatArray, FloatArray]:
    """One-sided power spectrum per channel, scaled so its sum is the mean square of the signal.

    Returns ``(freqs, power)`` with ``power`` of shape ``(channels, n_freqs)``.
    """
    n = x.shape[-1]
    spec = np.fft.rfft(x, axis=-1)
    power = np.square(np.abs(spec)) / (n * n)
    # Every bin except DC (and Nyquist for even n) stands for a positive and a negative frequency.
    if n % 2 == 0:
        power[..., 1:-1] *= 2.0
    else:
        power[..., 1:] *= 2.0
    freqs = np.asarray(np.fft.rfftfreq(n, d=1.0 / sample_rate_hz), dtype=np.float64)
    return freqs, np.asarray(power, dtype=np.float64)


def band_energies(x: FloatArray, sample_rate_hz: float, bands: Sequence[tuple[float, float]]) -> FloatArray:
    """Mean-square power in each ``[f_lo, f_hi)`` band, shape ``(channels, len(bands))``."""
    freqs, power = power_spectrum(x, sample_rate_hz)
    out = np.empty((x.shape[0], len(bands)), dtype=np.float64)
    for i, (lo, hi) in enumerate(bands):
        mask = (freqs >= lo) & (freqs < hi)
        out[:, i] = power[:, mask].sum(axis=-1)
    return out


def envelope(x: FloatArray) -> FloatArray:
    """Hilbert envelope (magnitude of the analytic signal) per channel, computed with one FFT pair."""
    n = x.shape[-1]
    spec = np.fft.fft(x - x.mean(axis=-1, keepdims=True), axis=-1)
    h = np.zeros(n)
    h[0] = 1.0
    if n % 2 == 0:
        h[n // 2] = 1.0
        h[1 : n // 2] = 2.0
    else:
        h[1 : (n + 1) // 2] = 2.0
    return np.asarray(np.abs(np.fft.ifft(spec * h, axis=-1)), dtype=np.float64)


def envelope_spectrum(x: FloatArray, sample_rate_hz: float) -> tuple[FloatArray, FloatArray]:
    """Amplitude spectrum of the de-meaned envelope per channel: ``(freqs, amplitude)``.

    A carrier amplitude-modulated at ``f_m`` with modulation depth ``m`` shows a line of height
    about ``m * carrier_amplitude / 2`` at ``f_m``.
    """
    env = envelope(x)
    env = env - env.mean(axis=-1, keepdims=True)
    n = x.shape[-1]
    amp = np.abs(np.fft.rfft(env, axis=-1)) * 2.0 / n
    freqs = np.asarray(np.fft.rfftfreq(n, d=1.0 / sample_rate_hz), dtype=np.float64)
    return freqs, np.asarray(amp, dtype=np.float64)


def envelope_band_energies(x: FloatArray, sample_rate_hz: float, bands: Sequence[tuple[float, float]]) -> FloatArray:
    """Mean-square power of the envelope in each band (bearing defect frequencies), ``(channels, bands)``."""
    env = envelope(x)
    return band_energies(env - env.mean(axis=-1, keepdims=True), sample_rate_hz, bands)


SCALAR_FEATURES: dict[str, Callable[[FloatArray], FloatArray]] = {
    "mean": mean,
    "std": std,
    "rms": rms,
    "peak": peak,
    "p2p": peak_to_peak,
    "crest": crest_factor,
    "kurtosis": kurtosis,
    "skewness": skewness,
}
"""Features computed from the samples alone, one value per channel."""


@dataclass(frozen=True, slots=True)
class FeatureSet:
    """Which features to compute for every channel of a window, and how they are named.

    ``scalar`` picks from :data:`SCALAR_FEATURES`; ``bands`` adds spectral band energies
    (``band_<lo>_<hi>``) and ``envelope_bands`` envelope-spectrum band energies (``env_<lo>_<hi>``),
    both needing the window's sample rate.
    """

    scalar: tuple[str, ...] = ("mean",)
    bands: tuple[tuple[float, float], ...] = ()
    envelope_bands: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        unknown = [f for f in self.scalar if f not in SCALAR_FEATURES]
        if unknown:
            raise ValueError(f"unknown features {unknown}; known: {sorted(SCALAR_FEATURES)}")

    def names(self) -> list[str]:
        """Feature names in the order :meth:`compute` returns them (per channel)."""
        out = list(self.scalar)
        out += [f"band_{lo:g}_{hi:g}" for lo, hi in self.bands]
        out += [f"env_{lo:g}_{hi:g}" for lo, hi in self.envelope_bands]
        return out

    def compute(self, x: FloatArray, sample_rate_hz: float) -> FloatArray:
        """Features of window ``x`` (channels, samples) as an array of shape ``(channels, features)``."""
        cols = [SCALAR_FEATURES[name](x)[:, None] for name in self.scalar]
        if self.bands:
            cols.append(band_energies(x, sample_rate_hz, self.bands))
        if self.envelope_bands:
            cols.append(envelope_band_energies(x, sample_rate_hz, self.envelope_bands))
        return np.concatenate(cols, axis=1) if cols else np.zeros((x.shape[0], 0))
