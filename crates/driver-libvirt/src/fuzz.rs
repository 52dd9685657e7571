//! Fuzzing of what the driver reads from libvirt: the domain, pool and
//! volume XML readers and the rewrite for the destination (`xml.rs`), and the provenance
//! markers' names (`provenance.rs`), fed arbitrary strings, XML made of libvirt's own pieces,
//! and real domain/volume XML with random cuts and insertions. The property is "no panic"
//! (an error is a fine answer to bad XML), plus round trips where the input is well formed.
//!
//! A short run is part of `cargo test` (proptest's default, 256 cases per property); a longer
//! one: `PROPTEST_CASES=400000 cargo test -p vmove-driver-libvirt --lib fuzz` (about 10
//! minutes on the 2-core lab machine: 20 000 cases per property took 31 s there, 0 panics;
//! docs/drivers/libvirt.md).
#![allow(clippy::unwrap_used)]

use crate::provenance::{is_marker_of, marker_name, marker_path};
use crate::xml::{
    FileFacts, Provenance, parse_domain, pool_target, rewrite_for_destination, vol_desc,
    vol_timestamps,
};
use crate::xml_samples::{POOL, VOLUME, running_with_provenance};
use proptest::prelude::*;
use vmove_driver::VmId;

/// The seeds mutated: a running domain with vmove's provenance (`xml_samples.rs`, shared with
/// `xml.rs`'s tests), a volume and a pool.
static DOMAIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(running_with_provenance);

/// Pieces of libvirt's XML (and of XML's own syntax) that random documents are built from.
const PIECES: &[&str] = &[
    "<domain type='qemu' id='1'>",
    "</domain>",
    "<devices>",
    "</devices>",
    "<disk type='file' device='disk'>",
    "<disk type='block' device='disk'>",
    "<disk>",
    "</disk>",
    "<source file='/i/a.qcow2'/>",
    "<source file=''/>",
    "<source>",
    "</source>",
    "<backingStore>",
    "<backingStore/>",
    "<backingStore type='file'>",
    "</backingStore>",
    "<target dev='vda'/>",
    "<target>",
    "</target>",
    "<path>/p</path>",
    "<driver type='qcow2'/>",
    "<mirror/>",
    "<readonly/>",
    "<serial type='file'>",
    "</serial>",
    "<log file='/l'/>",
    "<metadata>",
    "</metadata>",
    "<metadata/>",
    "<vmove:moved xmlns:vmove='https://vmove.invalid/libvirt/1' source-host='h' attempt='x'>",
    "</vmove:moved>",
    "<vmove:size path='/p' bytes='18446744073709551615'/>",
    "<vmove:source path='/p' bytes='-1'/>",
    "<memory unit='TiB'>99999999999999999999</memory>",
    "<memory unit='b'>18446744073709551615</memory>",
    "<capacity unit='EiB'>1</capacity>",
    "<capacity unit='TiB'>18446744073709551615</capacity>",
    "<allocation>12</allocation>",
    "<timestamps><mtime>1.2</mtime></timestamps>",
    "<name>",
    "</name>",
    "<uuid>u</uuid>",
    "&amp;",
    "&apos;",
    "&#x0;",
    "&bogus;",
    "<![CDATA[x]]>",
    "<!-- c -->",
    "<?pi x?>",
    "<!DOCTYPE d>",
    "\u{feff}",
    "é",
    "'",
    "\"",
    "<",
    ">",
    "/",
    "=",
    " ",
    "\n",
];

fn pieces() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 0..40).prop_map(|v| v.concat())
}

/// One change to a document: at a fraction of its length, cut some bytes and insert a piece.
fn edits() -> impl Strategy<Value = Vec<(f64, usize, String)>> {
    prop::collection::vec(
        (
            0.0f64..=1.0,
            0usize..24,
            prop_oneof![
                prop::sample::select(PIECES).prop_map(str::to_owned),
                any::<String>(),
            ],
        ),
        1..6,
    )
}

/// `doc` with the edits applied (positions moved back to a character boundary).
fn mutate(doc: &str, edits: &[(f64, usize, String)]) -> String {
    let mut s = doc.to_owned();
    for (at, cut, insert) in edits {
        let mut i = ((s.len() as f64) * at) as usize;
        i = i.min(s.len());
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        let mut j = (i + cut).min(s.len());
        while !s.is_char_boundary(j) {
            j += 1;
        }
        s.replace_range(i..j, insert);
    }
    s
}

/// Text that survives an XML attribute unchanged: no control characters (attribute values
/// normalise tabs and line ends to spaces, and XML forbids most others) and no unassigned ones.
fn attr_text() -> impl Strategy<Value = String> {
    "\\PC{0,40}"
}

fn provenance() -> impl Strategy<Value = Provenance> {
    (
        (attr_text(), attr_text(), attr_text(), any::<u32>()),
        prop::collection::vec(attr_text(), 0..4),
        prop::collection::vec(attr_text(), 0..3),
        prop::collection::vec((attr_text(), any::<u64>()), 0..3),
        prop::collection::vec(
            (
                attr_text(),
                any::<u64>(),
                prop::option::of(attr_text()),
                prop::option::of(attr_text()),
            ),
            0..3,
        ),
        prop::option::of(attr_text()),
    )
        .prop_map(
            |((source_host, source_name, run_id, attempt), files, logs, sizes, sources, nvram)| {
                Provenance {
                    source_host,
                    source_name,
                    run_id,
                    attempt,
                    files,
                    logs,
                    sizes,
                    nvram,
                    sources: sources
                        .into_iter()
                        .map(|(path, bytes, mtime, ctime)| FileFacts {
                            path,
                            bytes,
                            mtime,
                            ctime,
                        })
                        .collect(),
                }
            },
        )
}

/// Every reader on one input: none may panic.
fn read_all(s: &str) {
    let _ = parse_domain(s);
    let _ = pool_target(s);
    let _ = vol_desc(s);
    let _ = vol_timestamps(s);
}

proptest! {
    #[test]
    fn the_readers_never_panic_on_arbitrary_text(s in any::<String>()) {
        read_all(&s);
    }

    #[test]
    fn the_readers_never_panic_on_xml_made_of_libvirt_pieces(s in pieces()) {
        read_all(&s);
        read_all(&format!("<domain>{s}</domain>"));
        read_all(&format!("<domain><devices>{s}</devices><metadata>{s}</metadata></domain>"));
    }

    #[test]
    fn the_readers_never_panic_on_mutated_real_xml(e in edits()) {
        for doc in [DOMAIN.as_str(), VOLUME, POOL] {
            read_all(&mutate(doc, &e));
        }
    }

    /// The rewrite for the destination, on mutated domains with arbitrary paths and records:
    /// no panic, and what it returns is XML whose record reads back as written.
    #[test]
    fn the_rewrite_never_panics_and_its_output_reads_back(
        e in prop::option::of(edits()),
        paths in prop::collection::vec(
            (prop::sample::select(&["vda", "vdb", "hdc", "", "x"][..]), any::<String>()),
            0..3,
        ),
        flatten in any::<bool>(),
        record in prop::option::of(provenance()),
    ) {
        let doc = match &e {
            Some(e) => mutate(&DOMAIN, e),
            None => DOMAIN.clone(),
        };
        let paths: Vec<(String, String)> =
            paths.into_iter().map(|(t, p)| (t.to_owned(), p)).collect();
        if let Ok(out) = rewrite_for_destination(&doc, &paths, flatten, record.as_ref()) {
            let d = parse_domain(&out);
            prop_assert!(d.is_ok(), "the rewrite returned XML it cannot read: {out}");
            if let Some(p) = &record {
                prop_assert_eq!(d.unwrap().provenance, Some(p.clone()));
            }
        }
    }

    /// A well-formed domain with any record written into it reads that record back exactly
    /// (what proves a copy this attempt's after a crash: run and attempt included).
    #[test]
    fn a_provenance_record_round_trips(p in provenance()) {
        let out = rewrite_for_destination(&DOMAIN, &[], false, Some(&p)).unwrap();
        prop_assert_eq!(parse_domain(&out).unwrap().provenance, Some(p));
    }

    /// Marker names from any file name and VM id: no panic; for a file name and a VM id a
    /// marker can be made of (no `/`; an id without `.` or `/`), the name is that VM's marker.
    #[test]
    fn marker_names_never_panic_and_name_their_vm(file in any::<String>(), id in any::<String>(), dir in any::<String>()) {
        let vm = VmId::new(id.clone());
        let name = marker_name(&file, &vm);
        let _ = marker_path(&format!("{dir}/{file}"), &vm);
        let _ = marker_path(&file, &vm);
        let _ = is_marker_of(&file, &vm);
        if !file.is_empty() && !file.contains('/') && !id.is_empty() && !id.contains(['.', '/']) {
            prop_assert!(is_marker_of(&name, &vm), "{name} is not {id}'s marker");
        }
    }
}
