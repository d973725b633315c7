"""Metering in joules: the sampler, windows and steps, a run's Result, jobs and forecasts."""
