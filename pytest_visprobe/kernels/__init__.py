"""Pure functions behind the probes (fits, metrics, attacks), each tested against a reference.

Kernels take arrays and settings and return numbers; they know nothing of pytest, datasets or
records. The probe specs in ``pytest_visprobe.probes`` call them.
"""
