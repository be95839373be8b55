"""svg3d: stereoscopic and multi-view video from a monocular video (SVG, ICLR 2025).

Library layout (one module per concept, DESIGN.md §8):

- ``config``      every stage's settings (frozen dataclasses, torch-free): the one source of defaults
- ``camera``      conventions, pinhole camera, the 3D effect (strength, screen plane), the view plan
- ``source``      the input clip as a stream: probe, frames by range, natural order, colour
- ``work``        the work folder: stages committed chunk by chunk, locks, fingerprints, path checks
- ``convert``     ``python -m svg3d convert``: sequences the stages, lazily and resumably
- ``depth``       stage 1: the depth backends (Depth Anything, a folder of maps) and the stage
- ``flow``        optical-flow backends (RAFT from torchvision, OpenCV DIS)
- ``filters``     box and guided filters
- ``stabilise``   stage 2: temporal depth stabilisation
- ``shots``       shot cuts and the depth range each frame is normalised over
- ``warp``        z-buffered forward warping and crack clean-up (pure tensor functions)
- ``matrix``      stage 3: the frame matrix (views x frames): built, streamed, saved, loaded
- ``stages.fill`` stage 4: one protocol, a registry (classical, diffusion, telea, previous), ``--fill auto``
- ``denoise``     frame-matrix denoising with a video diffusion model (the diffusion filler's loop)
- ``unet3d``      our channels-last UNet3D forward over a diffusers checkpoint, compiled once per machine
- ``distributed`` one clip across the GPUs of a machine (torch.distributed)
- ``export``      every export (SBS/TB, anaglyph, RGB-D, VR180, grid, quilt, depth, PNG folders), streamed
- ``encode``      video files frame by frame: encoder settings, colour tags, stereo metadata, audio
- ``colour``      colour tags read and kept, YUV <-> RGB with the source's matrix and range
- ``isobmff``     the mp4 st3d/sv3d boxes (Spherical Video V2)
- ``parts``       temporary outputs renamed into place when complete; stale ones removed
- ``batch``       ``python -m svg3d batch``: folders and long videos as units, in-process or on Ray
- ``join``        segments of a long video joined without re-encoding
- ``demo``        the demo: rendered clips converted and scored against the truth
- ``metrics``     region PSNR/SSIM and flicker
- ``models``      every model loader, with a registry of known ids and licences
- ``tiny_models`` random-weight tiny and full-size models for tests and benchmarks
- ``scene``       a ground-truth scene renderer (moving cameras, real textures) for tests and the demo
- ``io``          images, depth maps, videos; atomic writes
- ``checks``      input validation helpers and the user-facing error type
- ``cli``         what the command-line entry points share
"""

__version__ = "0.1.0"
