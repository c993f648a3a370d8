"""gst-flavr's Python tools, as one package (see tools/README.md): run them from the repository
root as modules, e.g. `python3 -m tools.train.train --help`, or anywhere after
`pip install -e tools`."""
