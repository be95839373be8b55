"""svg3d: stereoscopic and multi-view video from a monocular video (SVG, ICLR 2025).

Library layout (one module per concept, DESIGN.md §8):

- ``camera``    conventions, pinhole camera, view baselines, depth normalisation
- ``warp``      z-buffered forward warping and crack clean-up (pure tensor functions)
- ``matrix``    the frame matrix (views x frames): build, save, load
- ``scene``     a ground-truth scene renderer for tests and the demo
- ``io``        clips, images, depth maps, atomic writes
- ``checks``    input validation helpers and the user-facing error type
"""

__version__ = "0.1.0"
