"""``lokin-doctor sentinel`` and ``lokin-doctor history``: the diagnosis at an interval, kept."""
