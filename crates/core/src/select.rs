//! Resolving a [`Selection`](crate::spec::Selection) against a host's VM list.

use crate::model::VmInfo;
use crate::spec::{Selection, SpecError};
use globset::{Glob, GlobMatcher};

/// Whether a pattern has glob characters (else it is a plain name).
pub fn is_glob(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// Compiles a name or glob pattern.
pub fn compile(p: &str) -> Result<GlobMatcher, SpecError> {
    if p.trim().is_empty() {
        return Err(SpecError::BadPattern {
            pattern: p.into(),
            reason: "it is empty".into(),
        });
    }
    Glob::new(p)
        .map(|g| g.compile_matcher())
        .map_err(|e| SpecError::BadPattern {
            pattern: p.into(),
            reason: e.kind().to_string(),
        })
}

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
                            if m.is_match(&vm.name) {
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
                        if vm.name == *p || vm.id.as_str() == p {
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
