"""ctk's lazy-pulling snapshotter (``ctk-pull lazy-serve``): a long-running containerd proxy snapshot plugin.

Overlay snapshots (:mod:`.store`) served over containerd's Snapshots API (:mod:`.daemon`); eStargz layers are
mounted lazily, one FUSE process per layer (:mod:`.remote`, :mod:`.lazyfs`), ahead of need (:mod:`.premount`).

It is ctk-pull's optional part: the FUSE binding comes with ``pip install 'ctk-pull[lazy]'``, nothing outside this
package imports it, and ctk-pull's other commands never import this package (``lazy-serve`` does, when it runs).
The daemon imports ctk_shared only, never the rest of ctk_pull, so it could become a tool of its own unchanged.
"""
