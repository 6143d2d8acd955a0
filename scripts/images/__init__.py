"""Real images made from Debian packages, for the demo, the tests and the benchmarks.

The busybox images of ``tests/support/images.py`` are one static binary; real images are a Debian root
filesystem with thousands of files, hardlinks, setuid binaries, system users and daemons that fork, drop
privileges and handle signals in their own ways. This package builds such root filesystems with Debian's
own builder, ``mmdebstrap``, from the machine's apt sources (read at run time, never written into the
repository), caches them on disk, and turns them into images with ``ctk-build`` (``FROM scratch`` +
``ADD rootfs.tar /`` + the image's metadata), so ctk-build's own tar extraction meets real trees too.

Run ``python3 -m scripts.images --help``. Library use: :func:`scripts.images.make.make_context` and
:func:`scripts.images.make.build_image`.
"""
