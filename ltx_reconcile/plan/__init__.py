"""Plans: the diff between specs and state, how it is shown, saved and checked for staleness."""
