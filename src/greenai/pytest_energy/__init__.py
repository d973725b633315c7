"""The parts of greenai's pytest plugin (:mod:`greenai.pytest_energy.plugin` holds the hooks).

- :mod:`~greenai.pytest_energy.options`: the ``--energy*`` options, checked at configure time.
- :mod:`~greenai.pytest_energy.budget`: ``@pytest.mark.energy_budget`` arguments and the
  check of a test's figures against them, with the failure messages.
- :mod:`~greenai.pytest_energy.metering`: the tracker around a test's call, its repeats,
  and the ``energy`` fixture.
- :mod:`~greenai.pytest_energy.session`: what a session gathered, merged across
  pytest-xdist workers; saving, comparing, and the exit status.
- :mod:`~greenai.pytest_energy.saved`: the session as a greenai run record (``--energy-save``)
  and reading one back (``--energy-compare``).
- :mod:`~greenai.pytest_energy.compare`: ``--energy-compare`` and ``--energy-compare-fail``,
  this session's tests against a saved one.
- :mod:`~greenai.pytest_energy.table`: the terminal summary.

Nothing here is imported by a pytest session that does not meter: ``options`` and
``budget`` use only the standard library, and the rest loads when the first test is
metered.
"""
