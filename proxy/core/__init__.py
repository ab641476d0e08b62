"""The pure core: models, tags, profiles, reports and decisions. No I/O, no clock."""
