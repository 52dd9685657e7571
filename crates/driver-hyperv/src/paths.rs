//! Windows path arithmetic for destination layouts and the source clean-up (pure functions).

use vmove_core::model::PathLayout;

/// The drive of a path (`E:`), upper-case, if it has one.
pub fn drive(p: &str) -> Option<String> {
    let b = p.as_bytes();
    if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        Some(p[..2].to_ascii_uppercase())
    } else {
        None
    }
}

/// The path without its drive (`E:\VMs\a` -> `\VMs\a`).
pub fn without_drive(p: &str) -> &str {
    if drive(p).is_some() { &p[2..] } else { p }
}

/// The last component.
pub fn file_name(p: &str) -> &str {
    p.trim_end_matches('\\').rsplit('\\').next().unwrap_or(p)
}

/// The parent folder (`E:\a\b` -> `E:\a`, `E:\a` -> `E:\`, `E:\` -> None).
pub fn parent(p: &str) -> Option<String> {
    let t = p.trim_end_matches('\\');
    let i = t.rfind('\\')?;
    if i == 2 && drive(t).is_some() {
        if t.len() == 3 {
            return None;
        }
        return Some(format!("{}\\", &t[..2]));
    }
    Some(t[..i].to_owned())
}

/// Joins with one backslash.
pub fn join(a: &str, b: &str) -> String {
    format!(
        "{}\\{}",
        a.trim_end_matches('\\'),
        b.trim_start_matches('\\')
    )
}

/// How many components below the volume (`E:\VMs` -> 1, `E:\VMs\a` -> 2).
pub fn depth(p: &str) -> usize {
    without_drive(p)
        .split('\\')
        .filter(|c| !c.is_empty())
        .count()
}

/// The folders above `files` that a clean-up may ever remove: below the first level of a volume
/// (depth 2 or more, the seed's rule), each once (ignoring case), deepest first, and in the
/// order the files name them among folders of one depth.
pub fn folders_above(files: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for f in files {
        let mut p = parent(f);
        while let Some(cur) = p {
            if depth(&cur) < 2 {
                break;
            }
            if !out.iter().any(|o| o.eq_ignore_ascii_case(&cur)) {
                out.push(cur.clone());
            }
            p = parent(&cur);
        }
    }
    // Stable: folders of one depth keep the order the files named them in.
    out.sort_by_key(|f| std::cmp::Reverse(depth(f)));
    out
}

/// Where a VM goes: its new configuration root (None: unchanged) and each disk's new path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The new `ConfigurationDataRoot` (also snapshot and smart-paging roots).
    pub root: Option<String>,
    /// (source path, destination path) per disk, in the VM's order.
    pub disks: Vec<(String, String)>,
}

/// Why a layout cannot be applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The base folder has no drive letter.
    #[error("the destination path {0} has no drive letter")]
    NoDrive(String),
    /// The base volume is missing on the destination.
    #[error("volume {0} does not exist on the destination")]
    MissingVolume(String),
    /// Two disks would land on the same file.
    #[error("two disks of the VM would both go to {0}")]
    Collision(String),
}

/// Computes the destination paths the seed would use.
///
/// - no base: every path unchanged;
/// - base `P` (or `P\<vm name>` with `put_in_subfolder`): config, checkpoints and smart paging in
///   `P`, each disk at `P\Virtual Hard Disks\<file>` (what `Move-VM -IncludeStorage
///   -DestinationStoragePath P` does);
/// - `preserve_drive_letter`: a disk on drive `D:` goes to `D:<P without drive>\<file>` when `D:`
///   exists on the destination, else as above.
pub fn plan(
    layout: &PathLayout,
    vm_name: &str,
    disks: &[String],
    dest_volumes: &[String],
) -> Result<Plan, PlanError> {
    let Some(base) = layout.base.as_deref() else {
        return Ok(Plan {
            root: None,
            disks: disks.iter().map(|d| (d.clone(), d.clone())).collect(),
        });
    };
    let base = if layout.put_in_subfolder {
        join(base, vm_name)
    } else {
        base.trim_end_matches('\\').to_owned()
    };
    let base_drive = drive(&base).ok_or_else(|| PlanError::NoDrive(base.clone()))?;
    let has = |d: &str| dest_volumes.iter().any(|v| v.eq_ignore_ascii_case(d));
    if !has(&base_drive) {
        return Err(PlanError::MissingVolume(base_drive));
    }
    let mut out = Vec::new();
    for d in disks {
        let name = file_name(d);
        let target = match drive(d) {
            Some(dd) if layout.preserve_drive_letter && has(&dd) => {
                format!("{dd}{}", join(without_drive(&base), name))
            }
            _ => join(&join(&base, "Virtual Hard Disks"), name),
        };
        if out
            .iter()
            .any(|(_, t): &(String, String)| t.eq_ignore_ascii_case(&target))
        {
            return Err(PlanError::Collision(target));
        }
        out.push((d.clone(), target));
    }
    Ok(Plan {
        root: Some(base),
        disks: out,
    })
}

/// The folders the seed removes from the source after a move, when empty, deepest first, none
/// of them a first-level folder of a volume.
pub fn cleanup_candidates(
    guid: &str,
    config_root: &str,
    snapshot_root: &str,
    swap_root: &str,
    disks: &[String],
) -> Vec<String> {
    let mut list: Vec<String> = Vec::new();
    let vmdir = |root: &str| join(root, "Virtual Machines");
    for root in [config_root, swap_root] {
        list.push(join(&vmdir(root), guid));
        list.push(vmdir(root));
    }
    list.push(join(config_root, "UndoLog Configuration"));
    list.push(join(config_root, "Planned Virtual Machines"));
    list.push(join(snapshot_root, "Snapshots"));
    for d in disks {
        if let Some(p) = parent(d) {
            list.push(p);
        }
    }
    list.push(config_root.trim_end_matches('\\').to_owned());
    // Walk up each, stopping before the first-level folder.
    let mut all: Vec<String> = Vec::new();
    for p in list {
        let mut cur = Some(p);
        while let Some(c) = cur {
            if depth(&c) < 2 {
                break;
            }
            if !all.iter().any(|x| x.eq_ignore_ascii_case(&c)) {
                all.push(c.clone());
            }
            cur = parent(&c);
        }
    }
    // Children before parents.
    all.sort_by_key(|p| std::cmp::Reverse(depth(p)));
    all
}

/// The WQL string literal of a value (single quotes, backslashes and quotes escaped).
pub fn wql_str(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn folders_above_files_stop_below_the_first_level_deepest_first() {
        let files = vec![
            "E:\\Hyper-V\\web\\Virtual Hard Disks\\web_0.vhdx".to_string(),
            "e:\\hyper-v\\web\\virtual hard disks\\web_1.vhdx".to_string(),
            "E:\\Hyper-V\\web\\Virtual Machines\\G.vmcx".to_string(),
            "D:\\Top\\d.vhdx".to_string(),
            "D:\\d.vhdx".to_string(),
        ];
        assert_eq!(
            folders_above(&files),
            vec![
                "E:\\Hyper-V\\web\\Virtual Hard Disks".to_string(),
                "E:\\Hyper-V\\web\\Virtual Machines".to_string(),
                "E:\\Hyper-V\\web".to_string(),
            ]
        );
    }

    fn vols(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn one_path_puts_disks_under_virtual_hard_disks() {
        let l = PathLayout {
            base: Some("E:\\Hyper-V".into()),
            put_in_subfolder: false,
            preserve_drive_letter: false,
        };
        let p = plan(&l, "web", &["C:\\x\\d1.vhdx".into()], &vols(&["C:", "E:"])).unwrap();
        assert_eq!(p.root.as_deref(), Some("E:\\Hyper-V"));
        assert_eq!(p.disks[0].1, "E:\\Hyper-V\\Virtual Hard Disks\\d1.vhdx");
    }

    #[test]
    fn put_in_subfolder_adds_the_vm_name() {
        let l = PathLayout {
            base: Some("E:\\Hyper-V\\".into()),
            put_in_subfolder: true,
            preserve_drive_letter: false,
        };
        let p = plan(&l, "web", &["C:\\x\\d1.vhdx".into()], &vols(&["E:"])).unwrap();
        assert_eq!(p.root.as_deref(), Some("E:\\Hyper-V\\web"));
        assert_eq!(
            p.disks[0].1,
            "E:\\Hyper-V\\web\\Virtual Hard Disks\\d1.vhdx"
        );
    }

    #[test]
    fn preserve_drive_letter_keeps_existing_volumes_only() {
        let l = PathLayout {
            base: Some("C:\\VMs".into()),
            put_in_subfolder: false,
            preserve_drive_letter: true,
        };
        let disks = vec![
            "C:\\x\\d1.vhdx".to_string(),
            "D:\\y\\d2.vhdx".into(),
            "F:\\z\\d3.vhdx".into(),
        ];
        let p = plan(&l, "web", &disks, &vols(&["C:", "D:"])).unwrap();
        assert_eq!(p.disks[0].1, "C:\\VMs\\d1.vhdx");
        assert_eq!(p.disks[1].1, "D:\\VMs\\d2.vhdx");
        // F: is not on the destination: the disk goes with the base path
        assert_eq!(p.disks[2].1, "C:\\VMs\\Virtual Hard Disks\\d3.vhdx");
    }

    #[test]
    fn missing_base_volume_and_name_collisions_are_refused() {
        let l = PathLayout {
            base: Some("Z:\\VMs".into()),
            put_in_subfolder: false,
            preserve_drive_letter: false,
        };
        assert_eq!(
            plan(&l, "a", &[], &vols(&["C:"])),
            Err(PlanError::MissingVolume("Z:".into()))
        );
        let l = PathLayout {
            base: Some("C:\\VMs".into()),
            put_in_subfolder: false,
            preserve_drive_letter: false,
        };
        let d = vec!["C:\\a\\x.vhdx".to_string(), "D:\\b\\x.vhdx".into()];
        assert!(matches!(
            plan(&l, "a", &d, &vols(&["C:"])),
            Err(PlanError::Collision(_))
        ));
    }

    #[test]
    fn no_base_keeps_paths() {
        let p = plan(&PathLayout::default(), "a", &["E:\\v\\a.vhdx".into()], &[]).unwrap();
        assert_eq!(
            p,
            Plan {
                root: None,
                disks: vec![("E:\\v\\a.vhdx".into(), "E:\\v\\a.vhdx".into())]
            }
        );
    }

    #[test]
    fn cleanup_never_lists_first_level_folders_and_lists_children_first() {
        let c = cleanup_candidates(
            "G1",
            "E:\\VMs\\vm1",
            "E:\\VMs\\vm1",
            "E:\\VMs\\vm1",
            &["F:\\Disks\\vm1\\a.vhdx".into(), "F:\\b.vhdx".into()],
        );
        assert!(c.iter().all(|p| depth(p) >= 2), "{c:?}");
        assert!(!c.iter().any(|p| p.eq_ignore_ascii_case("E:\\VMs")));
        assert!(c.contains(&"E:\\VMs\\vm1\\Virtual Machines\\G1".to_string()));
        assert!(c.contains(&"F:\\Disks\\vm1".to_string()));
        let pos = |s: &str| c.iter().position(|x| x == s).unwrap();
        assert!(pos("E:\\VMs\\vm1\\Virtual Machines\\G1") < pos("E:\\VMs\\vm1\\Virtual Machines"));
        assert!(pos("E:\\VMs\\vm1\\Virtual Machines") < pos("E:\\VMs\\vm1"));
    }

    #[test]
    fn wql_literals_escape_backslashes() {
        assert_eq!(wql_str("\\VMs\\a'b\\"), "'\\\\VMs\\\\a\\'b\\\\'");
    }
}
