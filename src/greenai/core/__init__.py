"""What every layer may use: errors and warnings, the clock, atomic file writes, and the one
formatter of figures with units (:mod:`greenai.core.units`)."""
