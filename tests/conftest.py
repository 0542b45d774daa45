"""Suite-wide fixtures: the fake AEP platform (``fake_aep``, ``fake_aep_env``)."""

pytest_plugins = ["aep_extract.testing.pytest_plugin"]
