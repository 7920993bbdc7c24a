"""The story on top of every layer: the demo that runs it and the run report that shows it."""
