"""Issue 17: an encrypted layer that containerd cannot hand to a stream processor gets a hint to the config
snippet in tools/crypt/README.md; other Apply errors keep theirs."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from ctk_shared import oci
from ctk_shared.errors import CtkError
from ctk_shared.images import Unpacker

DIGEST = "sha256:" + "a" * 64
GO_DOT = ('failed to get stream processor for application/vnd.oci.image.layer.v1.tar+gzip+encrypted: '
          'ctd-decoder resolves to executable in current directory (./ctd-decoder)')


class FakeClient:
    def __init__(self, error: CtkError) -> None:
        self.error = error
        self.removed: list[str] = []
        self.diff = SimpleNamespace(apply=self.apply)

    def apply(self, *a: object) -> None:
        raise self.error

    def snapshots(self, name: str) -> SimpleNamespace:
        return SimpleNamespace(remove=self.removed.append)


@pytest.mark.parametrize("media_type, message, hinted", [
    (oci.OCI_LAYER_GZIP + oci.ENCRYPTED_SUFFIX, GO_DOT, True),
    (oci.OCI_LAYER_GZIP + oci.ENCRYPTED_SUFFIX, 'exec: "ctd-decoder": executable file not found in $PATH', True),
    (oci.OCI_LAYER_GZIP, GO_DOT, False),
    (oci.OCI_LAYER_GZIP + oci.ENCRYPTED_SUFFIX, "ctk-crypt-decoder: no key opens this layer", False),
])
def test_apply_error_hint(media_type: str, message: str, hinted: bool) -> None:
    client = FakeClient(CtkError(message, hint="before"))
    u = Unpacker(client, "overlayfs", [DIGEST])  # type: ignore[arg-type]
    with pytest.raises(CtkError) as info:
        u.apply_prepared(0, oci.Descriptor(media_type, DIGEST, 1), ("extract-1", []))
    assert info.value.message == message
    if hinted:
        assert "tools/crypt/README.md" in (info.value.hint or "")
    else:
        assert info.value.hint == "before"
    assert client.removed == ["extract-1"]
