"""Image providers behind one interface; no Dagster imports here."""
