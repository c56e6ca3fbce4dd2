"""Training recipes. Importing this package registers every model (one import per recipe file)."""
from . import pix2pix  # noqa: F401
