"""Shared by both sides, standard library only: `runtime`, the program's view of its configuration.

The launcher writes the environment (`launch/envmap.py`); `runtime` reads it back inside the program
without pydantic. `parse_pairs` is the one parser of `key=value,...` lists for both.
"""
