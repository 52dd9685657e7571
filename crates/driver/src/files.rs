//! What a path a user named as a file is, when it is not a regular file: said in one way for the
//! config file (the CLI) and for the files a driver keeps (the simulator's `state_file`); and
//! the one bounded read of such a file ([`read_regular_file_bounded`]: the config file,
//! `serve`'s token file, a Hyper-V host's CA file, the fake's keytab) and, for the callers that
//! say its errors in words, one wording of them ([`BoundedReadError::describe`]).
//!
//! A device, a FIFO or a folder named as a file misleads in ways a missing file does not:
//! `/dev/zero` reads forever, `/dev/null` swallows what is written to it (a state file there
//! keeps nothing, silently), and a FIFO waits for a reader or a writer that never comes.

use std::fs::Metadata;
use std::path::Path;

/// Why [`read_regular_file_bounded`] read nothing (or gave up what it read).
#[derive(Debug)]
pub enum BoundedReadError {
    /// The path could not be looked at, opened or read.
    Io(std::io::Error),
    /// The path is not a regular file; what it is instead ("a character device").
    NotAFile(&'static str),
    /// The file holds more than the limit (by its size, or by what reading it gave: it may grow
    /// meanwhile).
    TooLarge,
}

impl BoundedReadError {
    /// The error in words, for the file at `path` that a person knows as the `what` (`keytab`,
    /// `CA file`) and that may hold at most `limit` bytes: `cannot read the keytab `p`: ...`,
    /// `the keytab `p` is not a regular file but a FIFO (named pipe)`, `the keytab `p` is
    /// larger than 1048576 bytes` followed by `too_large` (why such a file cannot be one: `: it
    /// is not a CA bundle`, or nothing).
    pub fn describe(&self, what: &str, path: &Path, limit: u64, too_large: &str) -> String {
        let shown = path.display();
        match self {
            BoundedReadError::Io(e) => format!("cannot read the {what} `{shown}`: {e}"),
            BoundedReadError::NotAFile(kind) => {
                format!("the {what} `{shown}` is not a regular file but {kind}")
            }
            BoundedReadError::TooLarge => {
                format!("the {what} `{shown}` is larger than {limit} bytes{too_large}")
            }
        }
    }
}

/// The bytes of the regular file at `path`, at most `limit` of them, with the metadata of the
/// file that was opened. What the path is is looked at before it is opened (through symbolic
/// links: opening a FIFO for reading waits for a writer), and again once it is open (it may
/// have been replaced meanwhile); a file larger than `limit` is refused before anything is read
/// from it, and the read itself stops one byte past `limit`.
pub fn read_regular_file_bounded(
    path: &Path,
    limit: u64,
) -> Result<(Metadata, Vec<u8>), BoundedReadError> {
    use std::io::Read;
    if let Some(kind) = not_a_regular_file(&std::fs::metadata(path).map_err(BoundedReadError::Io)?)
    {
        return Err(BoundedReadError::NotAFile(kind));
    }
    let file = std::fs::File::open(path).map_err(BoundedReadError::Io)?;
    let meta = file.metadata().map_err(BoundedReadError::Io)?;
    if let Some(kind) = not_a_regular_file(&meta) {
        return Err(BoundedReadError::NotAFile(kind));
    }
    if meta.len() > limit {
        return Err(BoundedReadError::TooLarge);
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(BoundedReadError::Io)?;
    if bytes.len() as u64 > limit {
        return Err(BoundedReadError::TooLarge);
    }
    Ok((meta, bytes))
}

/// What is at `path` (through symbolic links) if something is there and it is not a regular
/// file ([`not_a_regular_file`]); `None` for a regular file, for nothing there yet, and for a
/// path that cannot be looked at (opening it then says why). For a path about to be opened or
/// made: a device, a FIFO or a folder is refused before anything opens it.
pub fn not_a_regular_file_at(path: &std::path::Path) -> Option<&'static str> {
    std::fs::metadata(path)
        .ok()
        .as_ref()
        .and_then(not_a_regular_file)
}

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
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let of = |p: &std::path::Path| not_a_regular_file(&std::fs::metadata(p).unwrap());
        assert_eq!(of(&file), None);
        assert_eq!(of(dir.path()), Some("a folder"));
        #[cfg(unix)]
        assert_eq!(
            of(std::path::Path::new("/dev/null")),
            Some("a character device")
        );
        // By path: the same kinds, and nothing there yet is no refusal.
        assert_eq!(not_a_regular_file_at(&file), None);
        assert_eq!(not_a_regular_file_at(&dir.path().join("missing")), None);
        assert_eq!(not_a_regular_file_at(dir.path()), Some("a folder"));
    }

    #[test]
    fn a_bounded_read_gives_a_file_up_to_its_limit_and_refuses_the_rest_naming_why() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"12345").unwrap();
        let (meta, bytes) = read_regular_file_bounded(&file, 5).unwrap();
        assert_eq!((meta.len(), bytes.as_slice()), (5, &b"12345"[..]));
        assert!(matches!(
            read_regular_file_bounded(&file, 4),
            Err(BoundedReadError::TooLarge)
        ));
        assert!(matches!(
            read_regular_file_bounded(dir.path(), 5),
            Err(BoundedReadError::NotAFile("a folder"))
        ));
        assert!(matches!(
            read_regular_file_bounded(&dir.path().join("missing"), 5),
            Err(BoundedReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound
        ));
        // /dev/zero would read forever: refused by what it is, before a byte is read.
        #[cfg(unix)]
        assert!(matches!(
            read_regular_file_bounded(Path::new("/dev/zero"), 5),
            Err(BoundedReadError::NotAFile("a character device"))
        ));
    }
}
