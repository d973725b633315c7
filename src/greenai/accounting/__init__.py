"""From joules to CO2e and money: settings, grid intensity (offline data), PUE and prices.

``settings`` resolves where and at what price a run happens (arguments, config
file, environment); ``intensity`` turns the place into grams of CO2e per kWh,
from CodeCarbon's data files (read by ``grid_data``) or a user's hourly CSV
(``intensity_series``); ``carbon`` charges a result its CO2e and cost, the
prices being ``cost``'s.
"""
