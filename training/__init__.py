"""Training subsystem: autoencoder reconstructions, detector fitting, evaluation, calibration.

Depends on the `ldmscan` core (detector file, crop policy) and never on `scanner` or `server`.
"""
