"""From joules to CO2e and money: settings, grid intensity (offline data), PUE and prices."""
