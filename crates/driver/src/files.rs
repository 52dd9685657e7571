//! What a path a user named as a file is, when it is not a regular file: said in one way for the
//! config file (the CLI) and for the files a driver keeps (the simulator's `state_file`).
//!
//! A device, a FIFO or a folder named as a file misleads in ways a missing file does not:
//! `/dev/zero` reads forever, `/dev/null` swallows what is written to it (a state file there
//! keeps nothing, silently), and a FIFO waits for a reader or a writer that never comes.

use std::fs::Metadata;

/// What `m` describes, if it is not a regular file: "a folder", "a character device", "a block
/// device", "a FIFO (named pipe)", "a socket", else "not a file". `None` for a regular file.
pub fn not_a_regular_file(m: &Metadata) -> Option<&'static str> {
    let t = m.file_type();
    if t.is_file() {
        return None;
    }
    if t.is_dir() {
        return Some("a folder");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_char_device() {
            return Some("a character device");
        }
        if t.is_block_device() {
            return Some("a block device");
        }
        if t.is_fifo() {
            return Some("a FIFO (named pipe)");
        }
        if t.is_socket() {
            return Some("a socket");
        }
    }
    Some("not a file")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_path_is_named_and_a_regular_file_is_none() {
        let dir = tempfile_dir();
        let file = dir.join("f");
        std::fs::write(&file, b"x").unwrap();
        let of = |p: &std::path::Path| not_a_regular_file(&std::fs::metadata(p).unwrap());
        assert_eq!(of(&file), None);
        assert_eq!(of(&dir), Some("a folder"));
        #[cfg(unix)]
        assert_eq!(
            of(std::path::Path::new("/dev/null")),
            Some("a character device")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A folder of this test's own under the system's temporary folder.
    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("vmove-driver-files-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
