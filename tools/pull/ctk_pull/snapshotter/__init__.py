"""ctk's snapshotter daemon (``ctk-pull lazy-serve``): a containerd proxy snapshot plugin.

Phase 2a: ordinary overlay snapshots (:mod:`.store`) served over containerd's Snapshots API (:mod:`.daemon`).
Lazily fetched eStargz layers (FUSE mounts as lowerdirs) come later.
"""
