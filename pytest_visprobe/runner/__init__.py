"""The pytest side: options, the run's session state, the ``visprobe`` fixture, the reporter."""
