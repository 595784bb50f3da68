"""embedportal's benchmarks (`make bench`, i.e. `python -m bench`).

They print figures; nothing here asserts a timing. See bench/README.md.
"""
