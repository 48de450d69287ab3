"""Condition-monitoring features against signals whose answers are known in closed form."""

from __future__ import annotations

import numpy as np
import pytest

from plugins.predictive_maintenance import features as F

FS = 1000.0
T = np.arange(2000) / FS  # 2 s: whole periods for every tone used below


def sine(amplitude: float, freq: float) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * freq * T)


def test_sine_rms_peak_crest_kurtosis_skewness() -> None:
    x = np.vstack([sine(2.0, 50.0), sine(0.5, 125.0)])  # peaks fall on samples
    np.testing.assert_allclose(F.rms(x), [2.0 / np.sqrt(2), 0.5 / np.sqrt(2)], rtol=1e-9)
    np.testing.assert_allclose(F.peak(x), [2.0, 0.5], rtol=1e-9)
    np.testing.assert_allclose(F.crest_factor(x), np.sqrt(2), rtol=1e-9)
    np.testing.assert_allclose(F.kurtosis(x), 1.5, rtol=1e-6)  # sine: 3/2
    np.testing.assert_allclose(F.skewness(x), 0.0, atol=1e-9)
    np.testing.assert_allclose(F.peak_to_peak(x), [4.0, 1.0], rtol=1e-9)


def test_impulse_train_has_high_kurtosis_and_crest_factor() -> None:
    x = np.zeros((1, 1000))
    x[0, ::100] = 1.0  # 10 unit impulses in 1000 samples
    p = 0.01
    # Bernoulli(p) signal: kurtosis (1 - 3p + 3p^2) / (p (1 - p)), crest = 1 / sqrt(p).
    assert F.kurtosis(x)[0] == pytest.approx((1 - 3 * p + 3 * p * p) / (p * (1 - p)), rel=1e-9)
    assert F.crest_factor(x)[0] == pytest.approx(1 / np.sqrt(p), rel=1e-9)
    assert F.skewness(x)[0] > 9.0


def test_gaussian_noise_kurtosis_is_three() -> None:
    x = np.random.default_rng(0).normal(size=(3, 200_000))
    np.testing.assert_allclose(F.kurtosis(x), 3.0, atol=0.05)
    np.testing.assert_allclose(F.std(x), 1.0, atol=0.01)


def test_band_energy_of_a_known_tone() -> None:
    x = sine(3.0, 120.0)[None, :] + 1.0  # DC offset must stay out of the tone's band
    bands = [(0.0, 1.0), (100.0, 150.0), (150.0, 500.0)]
    e = F.band_energies(x, FS, bands)[0]
    assert e[0] == pytest.approx(1.0, rel=1e-9)  # DC power
    assert e[1] == pytest.approx(3.0**2 / 2, rel=1e-9)  # tone power A^2/2
    assert e[2] == pytest.approx(0.0, abs=1e-12)


def test_power_spectrum_obeys_parseval() -> None:
    x = np.random.default_rng(1).normal(size=(2, 1001))  # odd length too
    _, p = F.power_spectrum(x, FS)
    np.testing.assert_allclose(p.sum(axis=1), np.mean(x * x, axis=1), rtol=1e-9)


def test_envelope_spectrum_finds_the_modulation_frequency() -> None:
    carrier, f_mod, depth = 200.0, 13.0, 0.5
    x = ((1 + depth * np.sin(2 * np.pi * f_mod * T)) * np.sin(2 * np.pi * carrier * T))[None, :]
    freqs, amp = F.envelope_spectrum(x, FS)
    assert freqs[np.argmax(amp[0])] == pytest.approx(f_mod, abs=0.5)
    assert amp[0].max() == pytest.approx(depth, rel=0.05)  # envelope (1 + m sin) has a line of height m
    env = F.envelope_band_energies(x, FS, [(10.0, 16.0), (30.0, 60.0)])[0]
    assert env[0] > 100 * env[1]


def test_feature_set_names_and_shape() -> None:
    fs = F.FeatureSet(scalar=("mean", "rms", "kurtosis"), bands=((0.0, 100.0),), envelope_bands=((5.0, 20.0),))
    assert fs.names() == ["mean", "rms", "kurtosis", "band_0_100", "env_5_20"]
    out = fs.compute(np.vstack([sine(1.0, 50.0), sine(2.0, 50.0)]), FS)
    assert out.shape == (2, 5)
    assert out[1, 1] == pytest.approx(2 * out[0, 1])


def test_unknown_feature_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown features"):
        F.FeatureSet(scalar=("mean", "entropy"))


def test_constant_channel_gives_finite_features() -> None:
    x = np.full((1, 64), 5.0)
    for name, fn in F.SCALAR_FEATURES.items():
        assert np.isfinite(fn(x)).all(), name
    assert F.kurtosis(x)[0] == 0.0 and F.crest_factor(x)[0] == pytest.approx(1.0)
