"""Project-wide plumbing shared by every stage: paths and the typed ``params.yaml`` config."""
