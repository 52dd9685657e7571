//! Reading the domain, pool and volume XML we need, and rewriting a domain's XML for its
//! destination (new disk paths, flattened backing chains, our provenance record).
//!
//! Rewrites splice the original text at the byte ranges `roxmltree` reports, so everything we
//! do not touch stays exactly as libvirt wrote it.

use std::ops::Range;

/// The XML namespace of the provenance record vmove leaves in a moved domain's `<metadata>`.
pub const VMOVE_NS: &str = "https://vmove.invalid/libvirt/1";

/// A parse failure (libvirt gave us XML we do not understand).
#[derive(Debug, thiserror::Error)]
#[error("cannot read libvirt XML: {0}")]
pub struct XmlError(String);

impl From<roxmltree::Error> for XmlError {
    fn from(e: roxmltree::Error) -> Self {
        XmlError(e.to_string())
    }
}

/// One file-backed disk of a domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskDesc {
    /// Guest device name (`vda`).
    pub target: String,
    /// Top image path.
    pub source: String,
    /// Driver format (`qcow2`, `raw`), if given.
    pub format: Option<String>,
    /// Backing images from `<backingStore>`, nearest first (running domains only).
    pub backing: Vec<String>,
    /// The definition states the whole chain: `backing` ends at an empty `<backingStore/>`
    /// (libvirt writes it so for a running domain: the chain QEMU has open).
    pub chain_complete: bool,
    /// A `<mirror>` child: a block copy job holds this disk.
    pub mirror: bool,
    /// `<readonly/>` or `<shareable/>`: not copied by a storage migration.
    pub shared_or_readonly: bool,
}

/// What we read from a domain's XML.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainDesc {
    /// The domain's name, unique on its host.
    pub name: String,
    /// The domain's UUID: vmove's VM id.
    pub uuid: String,
    /// Memory, KiB.
    pub memory_kib: u64,
    /// Running: the XML is the live definition (libvirt gives the root an `id` only then).
    pub active: bool,
    /// File-backed disks (`device='disk'`, `type='file'`).
    pub disks: Vec<DiskDesc>,
    /// Files the domain writes logs to (serial/console `type='file'`, `<log file=...>`).
    pub log_files: Vec<String>,
    /// The UEFI variable store (`<os><nvram>`) when it is a named file.
    pub nvram: Option<String>,
    /// The provenance record of an earlier move, if vmove left one.
    pub provenance: Option<Provenance>,
}

/// The file of an `<nvram>` element: its text (`<nvram>/path</nvram>`), else its
/// `<source file=...>` (`<nvram type='file'>`, libvirt 8.5 and later); empty when libvirt has not
/// named it yet or it is not a file.
pub fn nvram_path(n: roxmltree::Node<'_, '_>) -> String {
    if n.attribute("type").is_some_and(|t| t != "file") {
        return String::new();
    }
    let text = n.text().unwrap_or("").trim();
    if !text.is_empty() {
        return text.to_owned();
    }
    child(n, "source")
        .and_then(|s| s.attribute("file"))
        .unwrap_or("")
        .trim()
        .to_owned()
}

/// What a moved domain's source left behind, recorded in the destination definition so it
/// survives a crash of vmove.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Provenance {
    /// Source host (configured name).
    pub source_host: String,
    /// The domain's name on the source.
    pub source_name: String,
    /// The run that made this copy (empty in records of older versions).
    pub run_id: String,
    /// The attempt of that run that made this copy (0 in records of older versions). With
    /// `run_id` it proves, after a crash between a migration's Finish and Confirm, that the
    /// copy running on the destination is the one this attempt made.
    pub attempt: u32,
    /// Every disk file of every chain on the source.
    pub files: Vec<String>,
    /// Log files on the source.
    pub logs: Vec<String>,
    /// Expected virtual size of each destination disk: (path, bytes).
    pub sizes: Vec<(String, u64)>,
    /// Offline moves: each source file as it was when its copy ended (what tells, after a
    /// crash that left the VM defined on both hosts, whether the source changed since).
    pub sources: Vec<FileFacts>,
    /// A UEFI VM's variable store on the source (a live move carries its content; the file,
    /// at the same path on both hosts, stays on the source until the clean-up).
    pub nvram: Option<String>,
}

/// A file as libvirt's storage API describes it: its size and its last modification and
/// change times (the volume's `<timestamps>`, seconds with nanoseconds, kept as libvirt
/// writes them). Any write to the file changes its change time, and so does a change of its
/// owner or mode; nobody can set it back (unlike the modification time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileFacts {
    /// Path on its host.
    pub path: String,
    /// Size of the file itself, bytes.
    pub bytes: u64,
    /// Last modification time, if libvirt reports it.
    pub mtime: Option<String>,
    /// Last change time, if libvirt reports it.
    pub ctime: Option<String>,
}

fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children().find(|c| c.has_tag_name(name))
}

fn memory_kib(n: roxmltree::Node<'_, '_>) -> u64 {
    let v: u64 = n.text().and_then(|t| t.trim().parse().ok()).unwrap_or(0);
    match unit_bytes(n.attribute("unit").unwrap_or("KiB")) {
        Some(k) => v.saturating_mul(k) / 1024,
        None => v,
    }
}

/// Bytes in one of libvirt's size units (`b`/`bytes`, `KB`, `k`/`KiB`, ... up to `T`/`TiB`).
fn unit_bytes(unit: &str) -> Option<u64> {
    Some(match unit {
        "b" | "bytes" => 1,
        "KB" => 1000,
        "k" | "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "M" | "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "G" | "GiB" => 1 << 30,
        "TB" => 1_000_000_000_000,
        "T" | "TiB" => 1 << 40,
        _ => return None,
    })
}

/// Parses a domain's XML.
pub fn parse_domain(xml: &str) -> Result<DomainDesc, XmlError> {
    let doc = roxmltree::Document::parse(xml)?;
    let root = doc.root_element();
    let text = |name: &str| {
        child(root, name)
            .and_then(|n| n.text())
            .unwrap_or("")
            .trim()
            .to_owned()
    };
    let mut disks = Vec::new();
    let mut log_files = Vec::new();
    if let Some(devices) = child(root, "devices") {
        for d in devices.children().filter(|c| c.has_tag_name("disk")) {
            if d.attribute("device").unwrap_or("disk") != "disk"
                || d.attribute("type") != Some("file")
            {
                continue;
            }
            let Some(source) = child(d, "source").and_then(|s| s.attribute("file")) else {
                continue;
            };
            let Some(target) = child(d, "target").and_then(|t| t.attribute("dev")) else {
                continue;
            };
            let mut backing = Vec::new();
            let mut chain_complete = false;
            let mut bs = child(d, "backingStore");
            while let Some(b) = bs {
                match child(b, "source").and_then(|s| s.attribute("file")) {
                    Some(f) => backing.push(f.to_owned()),
                    None => {
                        chain_complete =
                            b.attributes().len() == 0 && !b.children().any(|c| c.is_element());
                        break;
                    }
                }
                bs = child(b, "backingStore");
            }
            disks.push(DiskDesc {
                target: target.to_owned(),
                source: source.to_owned(),
                format: child(d, "driver")
                    .and_then(|dr| dr.attribute("type"))
                    .map(str::to_owned),
                backing,
                chain_complete,
                mirror: child(d, "mirror").is_some(),
                shared_or_readonly: child(d, "readonly").is_some()
                    || child(d, "shareable").is_some(),
            });
        }
        for c in devices
            .children()
            .filter(|c| c.has_tag_name("serial") || c.has_tag_name("console"))
        {
            if c.attribute("type") == Some("file")
                && let Some(p) = child(c, "source").and_then(|s| s.attribute("path"))
                && !log_files.iter().any(|l| l == p)
            {
                log_files.push(p.to_owned());
            }
            if let Some(p) = child(c, "log").and_then(|l| l.attribute("file"))
                && !log_files.iter().any(|l| l == p)
            {
                log_files.push(p.to_owned());
            }
        }
    }
    let provenance = child(root, "metadata")
        .and_then(|m| {
            m.children()
                .find(|c| c.tag_name().namespace() == Some(VMOVE_NS))
        })
        .map(|p| {
            let mut out = Provenance {
                source_host: p.attribute("source-host").unwrap_or("").to_owned(),
                source_name: p.attribute("source-name").unwrap_or("").to_owned(),
                run_id: p.attribute("run").unwrap_or("").to_owned(),
                attempt: p
                    .attribute("attempt")
                    .and_then(|a| a.parse().ok())
                    .unwrap_or(0),
                ..Provenance::default()
            };
            for c in p.children().filter(|c| c.is_element()) {
                let path = c.attribute("path").unwrap_or("").to_owned();
                match c.tag_name().name() {
                    "file" => out.files.push(path),
                    "log" => out.logs.push(path),
                    "nvram" => out.nvram = Some(path),
                    "size" => out.sizes.push((
                        path,
                        c.attribute("bytes")
                            .and_then(|b| b.parse().ok())
                            .unwrap_or(0),
                    )),
                    "source" => out.sources.push(FileFacts {
                        path,
                        bytes: c
                            .attribute("bytes")
                            .and_then(|b| b.parse().ok())
                            .unwrap_or(0),
                        mtime: c.attribute("mtime").map(str::to_owned),
                        ctime: c.attribute("ctime").map(str::to_owned),
                    }),
                    _ => {}
                }
            }
            out
        });
    Ok(DomainDesc {
        name: text("name"),
        uuid: text("uuid"),
        memory_kib: child(root, "memory").map(memory_kib).unwrap_or(0),
        active: root.attribute("id").is_some_and(|id| id != "-1"),
        disks,
        log_files,
        nvram: child(root, "os")
            .and_then(|os| child(os, "nvram"))
            .map(nvram_path)
            .filter(|p| !p.is_empty()),
        provenance,
    })
}

/// Escapes text for an XML attribute value.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '\'' => o.push_str("&apos;"),
            '"' => o.push_str("&quot;"),
            c => o.push(c),
        }
    }
    o
}

fn provenance_xml(p: &Provenance) -> String {
    let mut s = format!(
        "<vmove:moved xmlns:vmove='{VMOVE_NS}' source-host='{}' source-name='{}' run='{}' attempt='{}'>",
        escape(&p.source_host),
        escape(&p.source_name),
        escape(&p.run_id),
        p.attempt
    );
    for f in &p.files {
        s.push_str(&format!("<vmove:file path='{}'/>", escape(f)));
    }
    for f in &p.logs {
        s.push_str(&format!("<vmove:log path='{}'/>", escape(f)));
    }
    if let Some(f) = &p.nvram {
        s.push_str(&format!("<vmove:nvram path='{}'/>", escape(f)));
    }
    for (f, b) in &p.sizes {
        s.push_str(&format!("<vmove:size path='{}' bytes='{b}'/>", escape(f)));
    }
    for f in &p.sources {
        s.push_str(&format!(
            "<vmove:source path='{}' bytes='{}'",
            escape(&f.path),
            f.bytes
        ));
        for (name, t) in [("mtime", &f.mtime), ("ctime", &f.ctime)] {
            if let Some(t) = t {
                s.push_str(&format!(" {name}='{}'", escape(t)));
            }
        }
        s.push_str("/>");
    }
    s.push_str("</vmove:moved>");
    s
}

/// Rewrites a domain's XML for its destination: each disk whose target is in `paths` gets the
/// new source path; with `flatten`, each such disk's `<backingStore>` becomes `<backingStore/>`
/// (the destination gets one flat image); a provenance record replaces any earlier one.
pub fn rewrite_for_destination(
    xml: &str,
    paths: &[(String, String)],
    flatten: bool,
    provenance: Option<&Provenance>,
) -> Result<String, XmlError> {
    let doc = roxmltree::Document::parse(xml)?;
    let root = doc.root_element();
    let mut edits: Vec<(Range<usize>, String)> = Vec::new();
    if let Some(devices) = child(root, "devices") {
        for d in devices.children().filter(|c| c.has_tag_name("disk")) {
            let Some(target) = child(d, "target").and_then(|t| t.attribute("dev")) else {
                continue;
            };
            let Some((_, new_path)) = paths.iter().find(|(t, _)| t == target) else {
                continue;
            };
            let Some(src) = child(d, "source") else {
                continue;
            };
            let Some(attr) = src.attributes().find(|a| a.name() == "file") else {
                continue;
            };
            edits.push((attr.range_value(), escape(new_path)));
            if flatten {
                match child(d, "backingStore") {
                    Some(bs) => edits.push((bs.range(), "<backingStore/>".to_owned())),
                    None => {
                        // After </source>, or after the self-closing <source .../>.
                        let at = src.range().end;
                        edits.push((at..at, "<backingStore/>".to_owned()));
                    }
                }
            }
        }
    }
    if let Some(p) = provenance {
        let record = provenance_xml(p);
        match child(root, "metadata") {
            Some(m) => {
                if let Some(old) = m
                    .children()
                    .find(|c| c.tag_name().namespace() == Some(VMOVE_NS))
                {
                    edits.push((old.range(), record));
                } else {
                    // Just before </metadata> (or replacing a self-closing <metadata/>).
                    let r = m.range();
                    if xml[r.clone()].ends_with("/>") {
                        edits.push((r, format!("<metadata>{record}</metadata>")));
                    } else {
                        let close = xml[r.clone()]
                            .rfind("</")
                            .map(|i| r.start + i)
                            .unwrap_or(r.end);
                        edits.push((close..close, record));
                    }
                }
            }
            None => {
                let r = root.range();
                let close = xml[r.clone()]
                    .rfind("</")
                    .map(|i| r.start + i)
                    .unwrap_or(r.end);
                edits.push((close..close, format!("<metadata>{record}</metadata>")));
            }
        }
    }
    edits.sort_by(|a, b| b.0.start.cmp(&a.0.start).then(b.0.end.cmp(&a.0.end)));
    let mut out = xml.to_owned();
    for (r, s) in edits {
        out.replace_range(r, &s);
    }
    // The result must still parse (a cheap guard against a bad splice).
    roxmltree::Document::parse(&out)?;
    Ok(out)
}

/// The target path of a pool, from its XML.
pub fn pool_target(xml: &str) -> Result<Option<String>, XmlError> {
    let doc = roxmltree::Document::parse(xml)?;
    Ok(child(doc.root_element(), "target")
        .and_then(|t| child(t, "path"))
        .and_then(|p| p.text())
        .map(|s| s.trim().to_owned()))
}

/// What a volume's XML says of it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct VolDesc {
    /// Virtual size (`<capacity>`), bytes.
    pub capacity: Option<u64>,
    /// Bytes allocated on the host (`<allocation>`).
    pub allocation: Option<u64>,
    /// `<target><format type=...>`.
    pub format: Option<String>,
    /// `<backingStore><path>`.
    pub backing: Option<String>,
}

/// A size element with a `unit` attribute (libvirt writes `bytes`), in bytes.
fn size_bytes(n: roxmltree::Node<'_, '_>) -> Option<u64> {
    let v: u64 = n.text()?.trim().parse().ok()?;
    v.checked_mul(unit_bytes(n.attribute("unit").unwrap_or("bytes"))?)
}

/// A volume's sizes, format and backing file, from its XML (libvirt refreshes the volume
/// before writing it, as it does for `virStorageVolGetInfo`).
pub fn vol_desc(xml: &str) -> Result<VolDesc, XmlError> {
    let doc = roxmltree::Document::parse(xml)?;
    let root = doc.root_element();
    Ok(VolDesc {
        capacity: child(root, "capacity").and_then(size_bytes),
        allocation: child(root, "allocation").and_then(size_bytes),
        format: child(root, "target")
            .and_then(|t| child(t, "format"))
            .and_then(|f| f.attribute("type"))
            .map(str::to_owned),
        backing: child(root, "backingStore")
            .and_then(|b| child(b, "path"))
            .and_then(|p| p.text())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty()),
    })
}

/// A volume's last modification and change times (`<target><timestamps>`), from its XML.
pub fn vol_timestamps(xml: &str) -> Result<(Option<String>, Option<String>), XmlError> {
    let doc = roxmltree::Document::parse(xml)?;
    let ts = child(doc.root_element(), "target").and_then(|t| child(t, "timestamps"));
    let time = |name: &str| {
        ts.and_then(|t| child(t, name))
            .and_then(|n| n.text())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    Ok((time("mtime"), time("ctime")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::xml_samples::{POOL, RUNNING, VOLUME};

    #[test]
    fn parse_reads_disks_chain_mirror_logs() {
        let d = parse_domain(RUNNING).unwrap();
        assert_eq!(d.name, "vm1");
        assert_eq!(d.memory_kib, 65536);
        assert_eq!(d.disks.len(), 2, "the cdrom is not a disk we move");
        assert_eq!(
            d.disks[0].backing,
            vec!["/var/lib/libvirt/images/vm1-0-base.qcow2"]
        );
        assert_eq!(d.disks[0].format.as_deref(), Some("qcow2"));
        assert!(!d.disks[0].mirror);
        assert!(d.disks[1].mirror);
        assert_eq!(d.disks[1].source, "/data/it's.img");
        assert_eq!(d.log_files, vec!["/var/log/libvirt/qemu/vm1-serial0.log"]);
        assert!(d.provenance.is_none());
    }

    #[test]
    fn memory_in_any_unit_reads_as_kib() {
        let kib = |mem: &str| {
            parse_domain(&RUNNING.replace("<memory unit='KiB'>65536</memory>", mem))
                .unwrap()
                .memory_kib
        };
        assert_eq!(kib("<memory unit='bytes'>67108864</memory>"), 65536);
        assert_eq!(kib("<memory unit='M'>64</memory>"), 65536);
        assert_eq!(kib("<memory unit='GiB'>2</memory>"), 2 * 1024 * 1024);
        assert_eq!(kib("<memory unit='KB'>1024</memory>"), 1000);
        assert_eq!(kib("<memory>512</memory>"), 512, "KiB without a unit");
        assert_eq!(
            kib("<memory unit='parsec'>7</memory>"),
            7,
            "an unknown unit as KiB"
        );
    }

    #[test]
    fn a_chain_is_complete_only_where_the_definition_ends_it() {
        let d = parse_domain(RUNNING).unwrap();
        assert!(d.active, "a root with an id is a running domain's live XML");
        assert!(d.disks[0].chain_complete, "ends at <backingStore/>");
        assert!(
            !d.disks[1].chain_complete,
            "no <backingStore> at all: unknown"
        );
        // An inactive definition (no id) says nothing of the chain libvirt would find.
        let inactive = RUNNING.replace(" id='3'", "");
        assert!(!parse_domain(&inactive).unwrap().active);
        // A chain that stops at a network or unreadable layer is not complete.
        let network = RUNNING.replace(
            "<backingStore/>",
            "<backingStore type='network' index='4'><source protocol='nbd' name='x'/></backingStore>",
        );
        let d = parse_domain(&network).unwrap();
        assert_eq!(d.disks[0].backing.len(), 1);
        assert!(!d.disks[0].chain_complete);
    }

    #[test]
    fn rewrite_flattens_backing_chain_and_moves_paths() {
        let paths = vec![
            ("vda".to_owned(), "/dst/vm1/vm1-0.qcow2".to_owned()),
            ("vdb".to_owned(), "/dst/vm1/it's.img".to_owned()),
        ];
        let out = rewrite_for_destination(RUNNING, &paths, true, None).unwrap();
        let d = parse_domain(&out).unwrap();
        assert_eq!(d.disks[0].source, "/dst/vm1/vm1-0.qcow2");
        assert!(d.disks[0].backing.is_empty(), "chain flattened: {out}");
        assert!(!out.contains("vm1-0-base.qcow2"), "{out}");
        assert_eq!(d.disks[1].source, "/dst/vm1/it's.img");
        // Both disks get an empty <backingStore/>.
        assert_eq!(out.matches("<backingStore/>").count(), 2, "{out}");
        // The cdrom and everything else untouched.
        assert!(out.contains("<source file='/iso/a.iso'/>"));
        assert!(out.contains("<emulator>/usr/bin/qemu-system-x86_64</emulator>"));
    }

    /// A UEFI VM's NVRAM file, in each way libvirt writes it: a path as text, or (libvirt 8.5
    /// and later) `type='file'` with a `<source file>`; none when it is not a file.
    #[test]
    fn the_nvram_file_is_read_in_both_forms_and_only_when_it_is_a_file() {
        let with = |nvram: &str| {
            let xml = RUNNING.replacen(
                "<devices>",
                &format!("<os><type arch='x86_64'>hvm</type>{nvram}</os><devices>"),
                1,
            );
            assert!(xml.contains(nvram), "the sample has no <devices>");
            parse_domain(&xml).unwrap().nvram
        };
        let p = "/var/lib/libvirt/qemu/nvram/vm1_VARS.fd";
        assert_eq!(with(&format!("<nvram>{p}</nvram>")).as_deref(), Some(p));
        assert_eq!(
            with(&format!("<nvram type='file'><source file='{p}'/></nvram>")).as_deref(),
            Some(p)
        );
        assert_eq!(
            with("<nvram type='network'><source protocol='iscsi' name='x/1'/></nvram>"),
            None
        );
        assert_eq!(with("<nvram/>"), None);
        assert_eq!(parse_domain(RUNNING).unwrap().nvram, None);
    }

    #[test]
    fn rewrite_without_flatten_keeps_chain() {
        let paths = vec![("vda".to_owned(), "/dst/a.qcow2".to_owned())];
        let out = rewrite_for_destination(RUNNING, &paths, false, None).unwrap();
        let d = parse_domain(&out).unwrap();
        assert_eq!(d.disks[0].source, "/dst/a.qcow2");
        assert_eq!(d.disks[0].backing.len(), 1);
    }

    #[test]
    fn provenance_round_trips_and_replaces_earlier_record() {
        let p = Provenance {
            source_host: "hostA".into(),
            source_name: "vm1".into(),
            run_id: "run-7".into(),
            attempt: 2,
            files: vec!["/a/vm1-0.qcow2".into(), "/a/vm1-0-base.qcow2".into()],
            logs: vec!["/var/log/libvirt/qemu/vm1.log".into()],
            sizes: vec![("/b/vm1-0.qcow2".into(), 67108864)],
            nvram: Some("/var/lib/libvirt/qemu/nvram/vm1_VARS.fd".into()),
            sources: vec![
                FileFacts {
                    path: "/a/vm1-0.qcow2".into(),
                    bytes: 4521984,
                    mtime: Some("1795735743.261969297".into()),
                    ctime: Some("1795735743.261969298".into()),
                },
                FileFacts {
                    path: "/a/vm1-0-base.qcow2".into(),
                    bytes: 196616,
                    mtime: None,
                    ctime: None,
                },
            ],
        };
        let once = rewrite_for_destination(RUNNING, &[], false, Some(&p)).unwrap();
        assert_eq!(parse_domain(&once).unwrap().provenance.as_ref(), Some(&p));
        let p2 = Provenance {
            source_host: "hostB".into(),
            ..p.clone()
        };
        let twice = rewrite_for_destination(&once, &[], false, Some(&p2)).unwrap();
        assert_eq!(parse_domain(&twice).unwrap().provenance, Some(p2));
        assert_eq!(twice.matches("vmove:moved xmlns").count(), 1, "{twice}");
    }

    #[test]
    fn pool_and_volume_xml() {
        assert_eq!(
            pool_target(POOL).unwrap().as_deref(),
            Some("/var/lib/libvirt/images")
        );
        // The sample without its timestamps.
        let start = VOLUME.find("<timestamps>").unwrap();
        let end = VOLUME.find("</timestamps>").unwrap() + "</timestamps>".len();
        let vol = format!("{}{}", &VOLUME[..start], &VOLUME[end..]);
        let vol = vol.as_str();
        assert_eq!(
            vol_desc(vol).unwrap(),
            VolDesc {
                capacity: Some(67108864),
                allocation: Some(4356 * 1024),
                format: Some("qcow2".into()),
                backing: Some("/i/b.qcow2".into()),
            }
        );
        assert_eq!(vol_timestamps(vol).unwrap(), (None, None));
        let vol = "<volume type='file'><name>t.qcow2</name><target><path>/i/t.qcow2</path><timestamps><atime>1795735743.349969302</atime><mtime>1795735743.261969297</mtime><ctime>1795735743.261969298</ctime><btime>0</btime></timestamps></target></volume>";
        assert_eq!(
            vol_timestamps(vol).unwrap(),
            (
                Some("1795735743.261969297".into()),
                Some("1795735743.261969298".into())
            )
        );
    }
}
