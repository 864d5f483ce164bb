"""Who may ask for what: validation, limits by cost, rate, crowd, roster."""
