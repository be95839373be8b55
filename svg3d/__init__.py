"""svg3d: stereoscopic and multi-view video from a monocular video (SVG, ICLR 2025).

Library layout (one module per concept, DESIGN.md §8):

- ``camera``     conventions, pinhole camera, view baselines, depth normalisation
- ``depth``      stage 1: monocular depth (Depth Anything through transformers)
- ``flow``       optical-flow backends (RAFT from torchvision, OpenCV DIS)
- ``stabilise``  stage 2: temporal depth stabilisation and the guided filter
- ``warp``       z-buffered forward warping and crack clean-up (pure tensor functions)
- ``matrix``     stage 3: the frame matrix (views x frames): build, save, load
- ``denoise``    stage 4: frame-matrix denoising with a video diffusion model
- ``fill``       weight-free hole filling of the frame matrix (the classical backend)
- ``export``     every export (SBS/TB, anaglyph, RGB-D, VR180, grid, quilt, depth, PNG folders), streamed
- ``encode``     video files frame by frame: encoder settings, colour tags, stereo metadata, audio
- ``colour``     colour tags read and kept, YUV <-> RGB with the source's matrix and range
- ``isobmff``    the mp4 st3d/sv3d boxes (Spherical Video V2)
- ``parts``      temporary outputs renamed into place when complete; stale ones removed
- ``pipeline``   ``python -m svg3d convert``: every stage in a resumable work folder
- ``demo``       the demo: a rendered clip converted and scored against the truth
- ``metrics``    region PSNR/SSIM and flicker
- ``models``     every model loader, with a registry of known ids and licences
- ``unet3d``     our channels-last UNet3D forward over a diffusers checkpoint, compiled once per machine
- ``distributed`` one clip across the GPUs of a machine (torch.distributed)
- ``tiny_models`` random-weight tiny and full-size zeroscope models for tests and benchmarks
- ``scene``      a ground-truth scene renderer for tests and the demo
- ``io``         clips, images, depth maps, videos; atomic writes
- ``checks``     input validation helpers and the user-facing error type
- ``cli``        what the command-line entry points share
"""

__version__ = "0.1.0"
