"""Preflight: is the encoder fit to be probed? One test per check per encoder.

The plugin runs this file before every other one, so a broken encoder (train-mode BatchNorm,
dropout left on, NaN, constant output, double normalisation) shows up as a failure that names
the cause before any probe reports a misleading number. The checks use a small seeded batch of
real test images from the first label dataset that is on disk (the embedded `shapes` if none
is), named in the failure message and in --junitxml; see pytest_visprobe/encoders/preflight.py.
"""

from pytest_visprobe.encoders import preflight


def test_eval_mode(visprobe, visprobe_encoder):
    visprobe.preflight(preflight.check_eval_mode, visprobe_encoder)


def test_two_passes_agree(visprobe, visprobe_encoder):
    visprobe.preflight(preflight.check_deterministic, visprobe_encoder)


def test_batch_independent(visprobe, visprobe_encoder):
    visprobe.preflight(preflight.check_batch_independent, visprobe_encoder)


def test_finite_declared_shape(visprobe, visprobe_encoder):
    visprobe.preflight(preflight.check_output_contract, visprobe_encoder)


def test_not_constant(visprobe, visprobe_encoder):
    visprobe.preflight(preflight.check_not_constant, visprobe_encoder)


def test_normalised_once(visprobe, visprobe_encoder):
    visprobe.preflight(preflight.check_normalised_once, visprobe_encoder)
