//! Mountpoint refusals are typed: each names what failed.

use super::mounts::{prepare_mountpoint_with, unmount, MountpointError, Prepare};

#[test]
fn a_missing_mountpoint_is_missing_unless_asked_to_create_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b");
    let e = prepare_mountpoint_with(&path, Prepare::default()).unwrap_err();
    assert!(
        matches!(&e, MountpointError::Missing { path: p } if *p == path),
        "{e:?}"
    );
    let create = Prepare {
        create: true,
        ..Prepare::default()
    };
    let abs = prepare_mountpoint_with(&path, create).unwrap();
    assert!(abs.is_dir());
}

#[test]
fn a_file_and_a_directory_with_files_are_refused_by_kind() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    let e = prepare_mountpoint_with(&file, Prepare::default()).unwrap_err();
    assert!(matches!(e, MountpointError::NotDirectory { .. }), "{e:?}");
    let e = prepare_mountpoint_with(dir.path(), Prepare::default()).unwrap_err();
    assert!(matches!(e, MountpointError::NotEmpty { .. }), "{e:?}");
    let nonempty = Prepare {
        nonempty: true,
        ..Prepare::default()
    };
    assert!(prepare_mountpoint_with(dir.path(), nonempty).is_ok());
}

#[test]
fn unmounting_what_is_not_mounted_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let e = unmount(dir.path(), false).unwrap_err();
    if nix::unistd::geteuid().is_root() {
        assert!(matches!(e, MountpointError::NotMounted { .. }), "{e:?}");
    }
    // As root umount2 answers EINVAL; as a user fusermount3 does the same
    // check (or is missing). Either way the kind is not a generic failure.
    assert!(
        matches!(
            e,
            MountpointError::NotMounted { .. }
                | MountpointError::NotOurs { .. }
                | MountpointError::NoFusermount { .. }
                | MountpointError::Unmount { .. }
        ),
        "{e:?}"
    );
}
