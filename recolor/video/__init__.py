"""Films: colorize a video, steadily, with its sound (``recolor colorize film.mp4``).

* :mod:`.formats`    which files are videos, and the container and codec each is written with
                     (light: imports neither PyAV nor torch, so planning can use it)
* :mod:`.container`  reading and writing through PyAV (FFmpeg's libraries, from its wheels):
                     the decoder, the encoder, the streams copied packet for packet
* :mod:`.flow`       optical flow (OpenCV's DIS), warping and the forward-backward check
* :mod:`.stabilise`  steady colour: the predicted ab carried along the motion, reset at cuts
* :mod:`.frames`     frames -> colour frames through the photos' path (``Colorizer.predict_ab``
                     and the full-resolution join), stabilised between the two
* :mod:`.colorize`   one video file to another, streaming, atomically
* :mod:`.metrics`    flicker (warping error, Lai et al. 2018) and CDC (NTIRE 2023)
* :mod:`.scoring`    ``recolor evaluate`` on a folder of colour clips
* :mod:`.synthetic`  clips with known motion made from colour photos (tests, benchmarks)
"""
from .formats import VIDEO_EXTENSIONS, is_video_file, video_target  # noqa: F401
