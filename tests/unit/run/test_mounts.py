"""-v, --mount and --tmpfs parse like Docker's, errors included."""
import pytest
from ctk_run.mounts import MountSpec, merge_tmpfs_options, parse_mount, parse_tmpfs, parse_volume
from ctk_shared.errors import UsageError


@pytest.mark.parametrize("text,expected", [
    ("/host/data:/data", MountSpec("bind", "/host/data", "/data")),
    ("/host/data:/data:ro", MountSpec("bind", "/host/data", "/data", readonly=True)),
    ("/host/data:/data:rw", MountSpec("bind", "/host/data", "/data")),
    ("/host/data/:/data/", MountSpec("bind", "/host/data", "/data")),
    ("/host:/data:ro,rshared", MountSpec("bind", "/host", "/data", True, ("rshared",))),
    ("/host:/data:Z", MountSpec("bind", "/host", "/data", False, ("Z",))),
    ("/host:/data:z,ro", MountSpec("bind", "/host", "/data", True, ("z",))),
    ("pgdata:/var/lib/postgresql/data", MountSpec("volume", "pgdata", "/var/lib/postgresql/data")),
    ("pgdata:/var/lib/postgresql/data:ro,nocopy", MountSpec("volume", "pgdata", "/var/lib/postgresql/data", True,
                                                            ("nocopy",))),
    ("/var/cache", MountSpec("volume", "", "/var/cache")),
])
def test_parse_volume(text, expected):
    assert parse_volume(text) == expected


@pytest.mark.parametrize("text,message", [
    ("", "invalid volume specification: ''"),
    (":/data", "invalid volume specification"),
    ("/data:rw", "invalid volume specification: '/data:rw'"),  # a mode without a source
    ("/a:/b:ro:extra", "invalid volume specification"),
    ("/a:", "invalid volume specification"),
    ("/a:/b:bogus", "invalid mode: bogus"),
    ("/a:/b:ro,rw", "invalid mode: ro,rw"),
    ("/a:/b:shared,private", "invalid mode"),
    ("./data:/data", 'create ./data: "./data" includes invalid characters for a local volume name'),
    ("data/sub:/data", "If you intended to pass a host directory, use absolute path"),
    ("/a:relative", "invalid mount path: 'relative' mount path must be absolute"),
    ("relative", "mount path must be absolute"),
    ("/a:/", "destination can't be '/'"),
    ("/a:/b:nocopy", "field VolumeOptions must not be specified"),
    ("vol:/b:rshared", "field BindOptions must not be specified"),
])
def test_parse_volume_errors(text, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(".", r"\.")):
        parse_volume(text)


@pytest.mark.parametrize("text,expected", [
    ("type=bind,source=/src,target=/dst", MountSpec("bind", "/src", "/dst")),
    ("type=bind,src=/src,dst=/dst,readonly", MountSpec("bind", "/src", "/dst", readonly=True)),
    ("type=bind,src=/src,destination=/dst,ro=true", MountSpec("bind", "/src", "/dst", readonly=True)),
    ("type=bind,src=/src,dst=/dst,ro=0", MountSpec("bind", "/src", "/dst")),
    ("type=bind,src=/src,dst=/dst,bind-propagation=rslave", MountSpec("bind", "/src", "/dst", False, ("rslave",))),
    ("type=bind,src=/src,dst=/dst,bind-nonrecursive", MountSpec("bind", "/src", "/dst", False, ("nonrecursive",))),
    ("type=volume,src=myvol,dst=/data", MountSpec("volume", "myvol", "/data")),
    ("src=myvol,dst=/data,volume-nocopy", MountSpec("volume", "myvol", "/data", False, ("nocopy",))),
    ("type=volume,dst=/data", MountSpec("volume", "", "/data")),
    ("type=tmpfs,dst=/run,tmpfs-size=64m,tmpfs-mode=1777", MountSpec("tmpfs", "", "/run", False,
                                                                     ("size=64m", "mode=1777"))),
    ("type=tmpfs,dst=/run,tmpfs-size=1000", MountSpec("tmpfs", "", "/run", False, ("size=1000",))),
    ('type=bind,"source=/a,b",target=/dst', MountSpec("bind", "/a,b", "/dst")),
])
def test_parse_mount(text, expected):
    assert parse_mount(text) == expected


@pytest.mark.parametrize("text,message", [
    ("type=bind,target=/dst", 'invalid mount config for type "bind": field Source must not be empty'),
    ("type=bind,src=rel,target=/dst", "invalid mount path: 'rel' mount path must be absolute"),
    ("type=bind,src=/src", "target is required"),
    ("type=tmpfs,src=/x,dst=/run", 'invalid mount config for type "tmpfs": field Source must not be specified'),
    ("type=nfs,dst=/x", 'invalid mount config for type "nfs": mount type unknown'),
    ("type=bind,src=/a,dst=/b,tmpfs-size=1m", "cannot mix 'tmpfs-\\*' options with mount type 'bind'"),
    ("type=tmpfs,dst=/b,bind-propagation=shared", "cannot mix 'bind-\\*' options with mount type 'tmpfs'"),
    ("type=bind,src=/a,dst=/b,volume-nocopy", "cannot mix 'volume-\\*' options"),
    ("type=bind,src=/a,dst=/b,bogus=1", "unexpected key 'bogus' in 'bogus=1'"),
    ("type=bind,src=/a,dst", "invalid field 'dst' must be a key=value pair"),
    ("type=bind,src=/a,dst=/b,ro=maybe", "invalid value for ro: maybe"),
    ("type=bind,src=/a,dst=/b,bind-propagation=sideways", "invalid propagation mode: sideways"),
    ("type=tmpfs,dst=/b,tmpfs-size=lots", "invalid size: 'lots'"),
    ("type=tmpfs,dst=/b,tmpfs-mode=999", "invalid value for tmpfs-mode"),
    ("type=volume,src=/abs,dst=/b", "includes invalid characters for a local volume name"),
])
def test_parse_mount_errors(text, message):
    with pytest.raises(UsageError, match=message):
        parse_mount(text)


def test_parse_tmpfs():
    assert parse_tmpfs("/run") == MountSpec("tmpfs", "", "/run")
    assert parse_tmpfs("/run:size=64m,mode=1777") == MountSpec("tmpfs", "", "/run", False, ("size=64m", "mode=1777"))
    assert parse_tmpfs("/run:ro,noexec,uid=1000") == MountSpec("tmpfs", "", "/run", True, ("noexec", "uid=1000"))
    for bad, message in (("run", "mount path must be absolute"), ("/run:bogus", "invalid tmpfs option 'bogus'"),
                         ("/run:mode=rwx", "mode must be octal"), ("/:size=1m", "destination can't be '/'"),
                         (":size=1m", "invalid tmpfs specification")):
        with pytest.raises(UsageError, match=message):
            parse_tmpfs(bad)


def test_merge_tmpfs_options_last_one_wins():
    assert merge_tmpfs_options(["noexec", "nosuid", "size=1m", "exec", "size=2m"]) == ["nosuid", "exec", "size=2m"]
    assert merge_tmpfs_options(["rprivate", "rshared"]) == ["rshared"]
