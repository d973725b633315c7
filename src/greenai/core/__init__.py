"""What every layer may use: greenai's errors and warnings, its clock, and atomic file writes."""
