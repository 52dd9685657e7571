//! The TOML configuration file: where it is looked up, what it may hold, and its errors.
//!
//! ```toml
//! [defaults]          # every Settings key, plus put_in_subfolder, preserve_drive_letter, call_timeout
//! max_attempts = 3
//! backup_threshold = "1h"
//!
//! [hosts.hv1]         # one table per host
//! driver = "hyperv"   # sim | libvirt | hyperv
//! max_migrations = 2
//! path = 'D:\VMs'
//!
//! [pins]              # VM name = destination host
//! [priorities]        # VM name = priority (higher first)
//! ```
//! See `docs/config.md` for every key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use vmove_core::HostId;

/// The largest config file vmove reads: 16 MiB, thousands of times a config with a thousand
/// hosts. A larger file (or `/dev/zero`) is refused before it is read, not read into memory.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// The top-level tables.
pub const TOP_KEYS: [&str; 4] = ["defaults", "hosts", "pins", "priorities"];

/// A configuration error. Each names the file and key at fault; nothing has been touched.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read the config file `{path}` (found through {origin})")]
    Read {
        /// The file.
        path: PathBuf,
        /// How it was found.
        origin: Origin,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// Not a regular file (a device, a FIFO, a folder): nothing was read from it.
    #[error(
        "the config file `{path}` (found through {origin}) is not a regular file but {kind}: \
         give the path of a TOML file"
    )]
    NotAFile {
        /// The file.
        path: PathBuf,
        /// How it was found.
        origin: Origin,
        /// What it is instead ("a character device").
        kind: &'static str,
    },
    /// Larger than [`MAX_CONFIG_BYTES`]: not read whole.
    #[error(
        "the config file `{path}` (found through {origin}) is larger than {} MiB, the most vmove \
         reads: a config file is a few kilobytes, is it the right file?",
        MAX_CONFIG_BYTES >> 20
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// How it was found.
        origin: Origin,
    },
    /// Not TOML.
    #[error(
        "the config file `{path}` is not valid TOML at line {line}, column {column}: {message}"
    )]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's words.
        message: String,
    },
    /// A key nobody reads.
    #[error("{origin}: unknown key `{key}`{hint}")]
    UnknownKey {
        /// Where the key was written (the file and table, or the variable or flag).
        origin: String,
        /// The key.
        key: String,
        /// What would be known there.
        hint: String,
    },
    /// A value of the wrong kind or out of range.
    #[error("{origin}: `{key}` {message}")]
    BadValue {
        /// Where (file, environment variable or flag).
        origin: String,
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// How the config file was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `--config`.
    Flag,
    /// `$VMOVE_CONFIG`.
    Env,
    /// `./vmove.toml`.
    WorkingDir,
    /// `<user config dir>/vmove/vmove.toml`.
    UserDir,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Flag => "--config",
            Origin::Env => "$VMOVE_CONFIG",
            Origin::WorkingDir => "the working directory",
            Origin::UserDir => "the user config directory",
        })
    }
}

/// The hypervisor kinds a host may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DriverKind {
    /// The simulated cluster.
    Sim,
    /// libvirt/KVM.
    Libvirt,
    /// Hyper-V.
    HyperV,
}

impl DriverKind {
    /// The name written in the config.
    pub fn name(self) -> &'static str {
        match self {
            DriverKind::Sim => "sim",
            DriverKind::Libvirt => "libvirt",
            DriverKind::HyperV => "hyperv",
        }
    }
}

/// One `[hosts.<name>]` table.
#[derive(Clone, Debug, PartialEq)]
pub struct HostConfig {
    /// Which driver serves it.
    pub driver: DriverKind,
    /// Configured cap on its concurrent migrations.
    pub max_migrations: Option<u32>,
    /// Destination base folder for VMs moved here.
    pub path: Option<String>,
    /// Overrides `[defaults] put_in_subfolder` for this destination.
    pub put_in_subfolder: Option<bool>,
    /// Overrides `[defaults] preserve_drive_letter` for this destination.
    pub preserve_drive_letter: Option<bool>,
    /// Maintenance hook run before an evacuation of this host starts (argv, no shell).
    pub before_evacuate: Option<Vec<String>>,
    /// Maintenance hook run after an evacuation of this host ends (argv, no shell).
    pub after_evacuate: Option<Vec<String>>,
    /// The table as written, less `put_in_subfolder` and `preserve_drive_letter`: handed to the
    /// driver's constructor (it owns its keys and rejects unknown ones).
    pub driver_table: toml::Table,
}

/// A parsed config file (or the empty config when there is none).
#[derive(Clone, Debug, Default)]
pub struct ConfigFile {
    /// Where it came from.
    pub path: Option<(PathBuf, Origin)>,
    /// The `[defaults]` table, checked later key by key with the environment and flags.
    pub defaults: toml::Table,
    /// Hosts by name.
    pub hosts: BTreeMap<HostId, HostConfig>,
    /// VM name -> destination.
    pub pins: BTreeMap<String, HostId>,
    /// VM name -> priority.
    pub priorities: BTreeMap<String, i32>,
}

impl ConfigFile {
    /// How messages name the file it was read from ("config file `vmove.toml`"), if it was
    /// read from one.
    pub fn named(&self) -> Option<String> {
        self.path
            .as_ref()
            .map(|(p, _)| format!("config file `{}`", p.display()))
    }
}

/// Finds the config file: `--config`, then `$VMOVE_CONFIG`, then `./vmove.toml`, then
/// `<user config dir>/vmove/vmove.toml`. The first two must exist when given.
pub fn locate(
    flag: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<(PathBuf, Origin)> {
    if let Some(p) = flag {
        return Some((p.to_path_buf(), Origin::Flag));
    }
    if let Some(p) = env("VMOVE_CONFIG").filter(|p| !p.is_empty()) {
        return Some((PathBuf::from(p), Origin::Env));
    }
    let cwd = PathBuf::from("vmove.toml");
    if cwd.is_file() {
        return Some((cwd, Origin::WorkingDir));
    }
    let user =
        directories::BaseDirs::new().map(|b| b.config_dir().join("vmove").join("vmove.toml"))?;
    user.is_file().then_some((user, Origin::UserDir))
}

/// Reads and parses the config file found by [`locate`], or returns the empty config.
pub fn load(found: Option<(PathBuf, Origin)>) -> Result<ConfigFile, ConfigError> {
    let Some((path, origin)) = found else {
        return Ok(ConfigFile::default());
    };
    let text = read_text(&path, &origin)?;
    let mut cfg = parse(&text, &path)?;
    cfg.path = Some((path, origin));
    Ok(cfg)
}

/// The text of the config file at `path`, read with a bound: a path that is not a regular file
/// (a device, a FIFO, a folder) is refused before anything is read from it, and so is a file
/// larger than [`MAX_CONFIG_BYTES`] (checked again while reading: it may grow meanwhile).
/// Every reading of a config file goes through here (the journal's copy of it too).
pub fn read_text(path: &Path, origin: &Origin) -> Result<String, ConfigError> {
    use vmove_driver::files::{BoundedReadError, read_regular_file_bounded};
    let read_err = |source| ConfigError::Read {
        path: path.to_path_buf(),
        origin: origin.clone(),
        source,
    };
    let (_, bytes) = read_regular_file_bounded(path, MAX_CONFIG_BYTES).map_err(|e| match e {
        BoundedReadError::Io(source) => read_err(source),
        BoundedReadError::NotAFile(kind) => ConfigError::NotAFile {
            path: path.to_path_buf(),
            origin: origin.clone(),
            kind,
        },
        BoundedReadError::TooLarge => ConfigError::TooLarge {
            path: path.to_path_buf(),
            origin: origin.clone(),
        },
    })?;
    String::from_utf8(bytes).map_err(|e| {
        read_err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "it is not UTF-8 text (byte {})",
                e.utf8_error().valid_up_to()
            ),
        ))
    })
}

/// Parses config text; `path` is only for messages.
pub fn parse(text: &str, path: &Path) -> Result<ConfigFile, ConfigError> {
    let file = path.display().to_string();
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        ConfigError::Syntax {
            path: path.to_path_buf(),
            line,
            column,
            message: e.message().trim().to_owned(),
        }
    })?;
    let mut cfg = ConfigFile::default();
    for (key, value) in table {
        let origin = format!("config file `{file}`");
        match key.as_str() {
            "defaults" => cfg.defaults = expect_table(value, &origin, "defaults")?,
            "hosts" => {
                for (name, host) in expect_table(value, &origin, "hosts")? {
                    let at = format!("hosts.{name}");
                    check_host_name(&name, &origin)?;
                    let t = expect_table(host, &origin, &at)?;
                    cfg.hosts
                        .insert(HostId::new(&name), host_config(t, &origin, &at)?);
                }
            }
            "pins" => {
                for (vm, host) in expect_table(value, &origin, "pins")? {
                    match host {
                        toml::Value::String(h) => {
                            cfg.pins.insert(vm, HostId::new(h));
                        }
                        other => {
                            return Err(bad(
                                &origin,
                                &format!("pins.{vm}"),
                                "must be a host name",
                                &other,
                            ));
                        }
                    }
                }
            }
            "priorities" => {
                for (vm, p) in expect_table(value, &origin, "priorities")? {
                    let n = p
                        .as_integer()
                        .and_then(|n| i32::try_from(n).ok())
                        .ok_or_else(|| {
                            bad(
                                &origin,
                                &format!("priorities.{vm}"),
                                &format!("must be {}", priority_range()),
                                &p,
                            )
                        })?;
                    cfg.priorities.insert(vm, n);
                }
            }
            other => {
                return Err(ConfigError::UnknownKey {
                    origin,
                    key: other.to_owned(),
                    hint: format!(" (the file may hold {})", list(&TOP_KEYS)),
                });
            }
        }
    }
    Ok(cfg)
}

/// A host name is what `--to a,b`, `HOST:VM`, `--pin VM=HOST` and the journal separate with
/// `,` `:` and `=`: a name holding one (or nothing, or blanks and control characters) could not
/// be named on the command line, or would name two hosts.
fn check_host_name(name: &str, origin: &str) -> Result<(), ConfigError> {
    let why = if name.trim().is_empty() {
        Some("is empty")
    } else if name.contains([',', ':', '=']) {
        Some("holds `,`, `:` or `=`, which separate host names on the command line")
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("holds blanks or control characters")
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => Err(ConfigError::BadValue {
            origin: origin.to_owned(),
            key: format!("hosts.{}", name.escape_debug()),
            message: format!("is not a usable host name: it {why}"),
        }),
    }
}

fn host_config(mut t: toml::Table, origin: &str, at: &str) -> Result<HostConfig, ConfigError> {
    let driver = match t.get("driver") {
        None => {
            return Err(ConfigError::BadValue {
                origin: origin.to_owned(),
                key: format!("{at}.driver"),
                message: "is missing: say which driver serves the host (sim, libvirt or hyperv)"
                    .into(),
            });
        }
        Some(toml::Value::String(s)) => match s.as_str() {
            "sim" => DriverKind::Sim,
            "libvirt" => DriverKind::Libvirt,
            "hyperv" | "hyper-v" => DriverKind::HyperV,
            _ => {
                return Err(ConfigError::BadValue {
                    origin: origin.to_owned(),
                    key: format!("{at}.driver"),
                    message: format!(
                        "is `{s}`, which is not a driver (use sim, libvirt or hyperv)"
                    ),
                });
            }
        },
        Some(other) => {
            return Err(bad(
                origin,
                &format!("{at}.driver"),
                "must be a string",
                other,
            ));
        }
    };
    let max_migrations = match t.get("max_migrations") {
        None => None,
        Some(v) => {
            let n = v.as_integer().ok_or_else(|| {
                bad(
                    origin,
                    &format!("{at}.max_migrations"),
                    "must be a whole number",
                    v,
                )
            })?;
            if n < 1 {
                return Err(ConfigError::BadValue {
                    origin: origin.to_owned(),
                    key: format!("{at}.max_migrations"),
                    message: format!("must be at least 1, not {n}"),
                });
            }
            Some(u32::try_from(n).unwrap_or(u32::MAX))
        }
    };
    let path = match t.get("path") {
        None => None,
        Some(toml::Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(bad(
                origin,
                &format!("{at}.path"),
                "must be a string",
                other,
            ));
        }
    };
    let mut flag = |k: &str| -> Result<Option<bool>, ConfigError> {
        match t.remove(k) {
            None => Ok(None),
            Some(toml::Value::Boolean(b)) => Ok(Some(b)),
            Some(other) => Err(bad(
                origin,
                &format!("{at}.{k}"),
                "must be true or false",
                &other,
            )),
        }
    };
    let put_in_subfolder = flag("put_in_subfolder")?;
    let preserve_drive_letter = flag("preserve_drive_letter")?;
    let mut hook = |k: &str| -> Result<Option<Vec<String>>, ConfigError> {
        let key = format!("{at}.{k}");
        let must = "must be a command as an array of strings, program first \
                    ([\"/usr/local/bin/drain\", \"--host\", \"hv-01\"]; no shell)";
        match t.remove(k) {
            None => Ok(None),
            Some(toml::Value::Array(a)) => {
                let argv: Option<Vec<String>> =
                    a.iter().map(|v| v.as_str().map(str::to_owned)).collect();
                match argv {
                    Some(argv) if argv.first().is_some_and(|p| !p.is_empty()) => Ok(Some(argv)),
                    _ => Err(bad(origin, &key, must, &toml::Value::Array(a))),
                }
            }
            Some(other) => Err(bad(origin, &key, must, &other)),
        }
    };
    let before_evacuate = hook("before_evacuate")?;
    let after_evacuate = hook("after_evacuate")?;
    Ok(HostConfig {
        driver,
        max_migrations,
        path,
        put_in_subfolder,
        preserve_drive_letter,
        before_evacuate,
        after_evacuate,
        driver_table: t,
    })
}

fn expect_table(v: toml::Value, origin: &str, key: &str) -> Result<toml::Table, ConfigError> {
    match v {
        toml::Value::Table(t) => Ok(t),
        other => Err(bad(origin, key, "must be a table", &other)),
    }
}

/// What a priority may be (`[priorities]`, `--priority VM=N`), in the words of both errors: the
/// core's `i32`.
pub fn priority_range() -> String {
    format!("a whole number from {} to {}", i32::MIN, i32::MAX)
}

fn bad(origin: &str, key: &str, what: &str, got: &toml::Value) -> ConfigError {
    ConfigError::BadValue {
        origin: origin.to_owned(),
        key: key.to_owned(),
        message: format!("{what}, not {}", got),
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// "a, b or c".
pub fn list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => format!("`{one}`"),
        [init @ .., last] => format!(
            "{} or `{last}`",
            init.iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<ConfigFile, ConfigError> {
        parse(text, Path::new("t.toml"))
    }

    /// A folder of its own under the system's temporary folder, removed when dropped.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(name: &str) -> TempDir {
            let d =
                std::env::temp_dir().join(format!("vmove-config-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).expect("temporary folder");
            TempDir(d)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn load_err(path: &Path) -> String {
        match load(Some((path.to_path_buf(), Origin::Flag))) {
            Ok(_) => panic!("`{}` was accepted", path.display()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_config_file_over_16_mib_is_refused_naming_the_file_and_the_limit() {
        let dir = TempDir::new("large");
        let big = dir.0.join("big.toml");
        // A valid TOML file (a comment) one byte over the limit: refused on its size alone.
        let mut text = "#".repeat(usize::try_from(MAX_CONFIG_BYTES).expect("fits"));
        text.push('\n');
        std::fs::write(&big, &text).expect("write");
        let e = load_err(&big);
        assert!(
            e.contains(&format!("`{}`", big.display())) && e.contains("larger than 16 MiB"),
            "{e}"
        );
        text.pop();
        std::fs::write(&big, &text).expect("write");
        assert!(load(Some((big, Origin::Flag))).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn a_config_path_that_is_a_device_a_fifo_or_a_folder_is_refused_without_reading_it() {
        let dir = TempDir::new("kinds");
        let fifo = dir.0.join("fifo.toml");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        for (path, kind) in [
            (Path::new("/dev/zero"), "a character device"),
            (Path::new("/dev/null"), "a character device"),
            (fifo.as_path(), "a FIFO"),
            (dir.0.as_path(), "a folder"),
        ] {
            let e = load_err(path);
            assert!(
                e.contains(&format!("`{}`", path.display()))
                    && e.contains("not a regular file")
                    && e.contains(kind),
                "{e}"
            );
        }
    }

    #[test]
    fn host_tables_split_cli_keys_from_driver_keys() {
        let c = p(r#"
            [hosts.kvm1]
            driver = "libvirt"
            uri = "qemu+tcp://127.0.0.1/system"
            max_migrations = 3
            path = "/var/lib/vms"
            put_in_subfolder = true
        "#)
        .unwrap();
        let h = &c.hosts[&HostId::new("kvm1")];
        assert_eq!(h.driver, DriverKind::Libvirt);
        assert_eq!(h.max_migrations, Some(3));
        assert_eq!(h.put_in_subfolder, Some(true));
        assert_eq!(
            h.driver_table.get("uri").and_then(|v| v.as_str()),
            Some("qemu+tcp://127.0.0.1/system")
        );
        assert!(h.driver_table.get("put_in_subfolder").is_none());
    }

    #[test]
    fn syntax_errors_give_the_line() {
        let e = p("[defaults]\nmax_attempts = = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
        assert!(e.contains("t.toml"), "{e}");
    }

    #[test]
    fn unknown_top_level_key_is_named() {
        let e = p("[hostz.a]\ndriver = \"sim\"\n").unwrap_err().to_string();
        assert!(e.contains("unknown key `hostz`"), "{e}");
    }

    #[test]
    fn zero_cap_and_bad_driver_name_their_key() {
        let e = p("[hosts.a]\ndriver = \"sim\"\nmax_migrations = 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`hosts.a.max_migrations` must be at least 1"),
            "{e}"
        );
        let e = p("[hosts.a]\ndriver = \"xen\"\n").unwrap_err().to_string();
        assert!(e.contains("`hosts.a.driver`") && e.contains("xen"), "{e}");
        let e = p("[hosts.a]\nmax_migrations = 2\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`hosts.a.driver` is missing"), "{e}");
    }
}
