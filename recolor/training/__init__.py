"""Training recipes. Importing this package registers every model (one import per recipe file)."""
from . import divcolor  # noqa: F401
from . import efficientnet_unet  # noqa: F401
from . import paper000  # noqa: F401
from . import gan_family  # noqa: F401
from . import pix2pix  # noqa: F401
from . import resnet_unet  # noqa: F401
