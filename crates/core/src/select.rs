//! Resolving a [`Selection`] against a host's VM list.

use crate::model::VmInfo;
use crate::spec::{Selection, SourceSpec};
/// Pattern compiling lives with the [`Selection`] it validates; re-exported here for callers
/// that resolve selections.
pub use crate::spec::{compile, is_glob};

/// The result of applying a selection to a host's VMs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// Indices into the VM list, in selection order (as named, then as listed).
    pub chosen: Vec<usize>,
    /// Plain names that matched no VM.
    pub missing: Vec<String>,
    /// Glob patterns that matched no VM.
    pub unmatched_patterns: Vec<String>,
}

/// Applies a selection. Patterns are assumed valid ([`RunSpec::validate`](crate::spec::RunSpec::validate) checked them).
pub fn apply(sel: &Selection, vms: &[VmInfo]) -> Selected {
    match sel {
        Selection::All => Selected {
            chosen: (0..vms.len()).collect(),
            missing: vec![],
            unmatched_patterns: vec![],
        },
        Selection::Names(pats) => {
            let mut chosen = Vec::new();
            let mut taken = vec![false; vms.len()];
            let mut missing = Vec::new();
            let mut unmatched = Vec::new();
            for p in pats {
                let mut hit = false;
                if is_glob(p) {
                    if let Ok(m) = compile(p) {
                        for (i, vm) in vms.iter().enumerate() {
                            if m.is_match(&*vm.name) {
                                hit = true;
                                if !taken[i] {
                                    taken[i] = true;
                                    chosen.push(i);
                                }
                            }
                        }
                    }
                    if !hit {
                        unmatched.push(p.clone());
                    }
                } else {
                    for (i, vm) in vms.iter().enumerate() {
                        if *vm.name == **p || vm.id.as_str() == p {
                            hit = true;
                            if !taken[i] {
                                taken[i] = true;
                                chosen.push(i);
                            }
                        }
                    }
                    if !hit {
                        missing.push(p.clone());
                    }
                }
            }
            Selected {
                chosen,
                missing,
                unmatched_patterns: unmatched,
            }
        }
    }
}

/// Applies a source's selection less the VMs its exclusions match (a name, an id or a glob
/// pattern): an excluded VM is never chosen, whatever the selection says.
pub fn apply_source(src: &SourceSpec, vms: &[VmInfo]) -> Selected {
    apply_excluding(&src.select, &src.exclude, vms)
}

/// [`apply`], then drops the VMs `exclude` matches.
pub fn apply_excluding(sel: &Selection, exclude: &[String], vms: &[VmInfo]) -> Selected {
    let mut selected = apply(sel, vms);
    if exclude.is_empty() {
        return selected;
    }
    selected.chosen.retain(|&i| {
        vms.get(i)
            .is_some_and(|vm| excluded_by(exclude, vm).is_none())
    });
    selected
}

/// The first of `exclude` (names, ids or glob patterns) that matches `vm`, if any: the one rule
/// of what an exclusion leaves out.
pub fn excluded_by<'a>(exclude: &'a [String], vm: &VmInfo) -> Option<&'a str> {
    exclude
        .iter()
        .find(|p| vm.id.as_str() == p.as_str() || compile(p).is_ok_and(|m| m.is_match(&*vm.name)))
        .map(String::as_str)
}
