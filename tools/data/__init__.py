"""Training material: photographs and real video clips from Debian packages."""
