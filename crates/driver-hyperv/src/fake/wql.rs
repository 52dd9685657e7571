//! The WQL subset the driver uses: `SELECT * FROM C [WHERE p = v AND p LIKE 'x%' ...]` and
//! `ASSOCIATORS OF {C.K="v"} WHERE AssocClass=A ResultClass=R ResultRole=P`.

/// A condition on one property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cond {
    /// `p = 'v'` or `p = 3` (case-insensitive for strings, as WMI compares).
    Eq(String, String),
    /// `p LIKE 'pat'` with `%` and `_`.
    Like(String, String),
}

/// A parsed query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// `SELECT * FROM class WHERE ...`.
    Select {
        /// The class.
        class: String,
        /// ANDed conditions.
        conds: Vec<Cond>,
    },
    /// `ASSOCIATORS OF {path} WHERE ...`.
    Associators {
        /// The source object's class.
        class: String,
        /// Its keys.
        keys: Vec<(String, String)>,
        /// `AssocClass`.
        assoc_class: Option<String>,
        /// `ResultClass`.
        result_class: Option<String>,
        /// `ResultRole`.
        result_role: Option<String>,
    },
}

/// Parses the subset; `Err` carries words for a fault.
pub fn parse(q: &str) -> Result<Query, String> {
    let t = q.trim();
    let upper = t.to_ascii_uppercase();
    if upper.starts_with("ASSOCIATORS OF") {
        let open = t.find('{').ok_or("missing {")?;
        let close = t.rfind('}').ok_or("missing }")?;
        let path = &t[open + 1..close];
        let (class, keys_text) = path.split_once('.').ok_or("object path without keys")?;
        let keys = parse_keys(keys_text)?;
        let rest = t[close + 1..].trim();
        let rest = rest
            .strip_prefix("WHERE")
            .or_else(|| rest.strip_prefix("where"))
            .unwrap_or(rest);
        let mut assoc_class = None;
        let mut result_class = None;
        let mut result_role = None;
        for tok in rest.split_whitespace() {
            if let Some((k, v)) = tok.split_once('=') {
                match k.to_ascii_lowercase().as_str() {
                    "assocclass" => assoc_class = Some(v.to_owned()),
                    "resultclass" => result_class = Some(v.to_owned()),
                    "resultrole" => result_role = Some(v.to_owned()),
                    other => return Err(format!("unsupported ASSOCIATORS OF qualifier {other}")),
                }
            }
        }
        return Ok(Query::Associators {
            class: class.trim().to_owned(),
            keys,
            assoc_class,
            result_class,
            result_role,
        });
    }
    if !upper.starts_with("SELECT * FROM ") {
        return Err(format!("unsupported query: {t}"));
    }
    let rest = t["SELECT * FROM ".len()..].trim();
    let (class, where_part) = match rest.find(|c: char| c.is_whitespace()) {
        Some(i) => (&rest[..i], rest[i..].trim()),
        None => (rest, ""),
    };
    let mut conds = Vec::new();
    if !where_part.is_empty() {
        let w = where_part
            .strip_prefix("WHERE ")
            .or_else(|| where_part.strip_prefix("where "))
            .ok_or_else(|| format!("expected WHERE, found {where_part}"))?;
        for part in split_and(w) {
            conds.push(parse_cond(part.trim())?);
        }
    }
    Ok(Query::Select {
        class: class.to_owned(),
        conds,
    })
}

fn split_and(s: &str) -> Vec<String> {
    // split on " AND " outside quotes
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quote {
            cur.push(c);
            if c == '\\' && i + 1 < chars.len() {
                cur.push(chars[i + 1]);
                i += 2;
                continue;
            }
            if c == q {
                quote = None;
            }
        } else if c == '\'' || c == '"' {
            quote = Some(c);
            cur.push(c);
        } else if chars[i..]
            .iter()
            .take(5)
            .collect::<String>()
            .eq_ignore_ascii_case(" and ")
        {
            parts.push(std::mem::take(&mut cur));
            i += 5;
            continue;
        } else {
            cur.push(c);
        }
        i += 1;
    }
    parts.push(cur);
    parts
}

fn unquote(v: &str) -> Result<String, String> {
    let v = v.trim();
    if v.len() >= 2
        && ((v.starts_with('\'') && v.ends_with('\'')) || (v.starts_with('"') && v.ends_with('"')))
    {
        let inner = &v[1..v.len() - 1];
        let mut out = String::new();
        let mut it = inner.chars();
        while let Some(c) = it.next() {
            if c == '\\' {
                out.push(it.next().ok_or("dangling escape")?);
            } else {
                out.push(c);
            }
        }
        Ok(out)
    } else {
        Ok(v.to_owned())
    }
}

fn parse_cond(s: &str) -> Result<Cond, String> {
    let upper = s.to_ascii_uppercase();
    if let Some(i) = upper.find(" LIKE ") {
        return Ok(Cond::Like(s[..i].trim().to_owned(), unquote(&s[i + 6..])?));
    }
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("unsupported condition {s}"))?;
    Ok(Cond::Eq(k.trim().to_owned(), unquote(v)?))
}

fn parse_keys(s: &str) -> Result<Vec<(String, String)>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut keys = Vec::new();
    let mut i = 0;
    loop {
        while i < chars.len() && (chars[i] == ',' || chars[i].is_whitespace()) {
            i += 1;
        }
        if i >= chars.len() {
            return Ok(keys);
        }
        let eq = (i..chars.len())
            .find(|&k| chars[k] == '=')
            .ok_or("bad key")?;
        let name: String = chars[i..eq].iter().collect();
        let mut v = eq + 1;
        while v < chars.len() && chars[v].is_whitespace() {
            v += 1;
        }
        let q = *chars.get(v).ok_or("bad key value")?;
        if q != '"' && q != '\'' {
            return Err("unquoted key value".into());
        }
        let mut k = v + 1;
        let mut end = None;
        while k < chars.len() {
            if chars[k] == '\\' {
                k += 2;
                continue;
            }
            if chars[k] == q {
                end = Some(k);
                break;
            }
            k += 1;
        }
        let end = end.ok_or("unterminated key value")?;
        let raw: String = chars[v..=end].iter().collect();
        keys.push((name.trim().to_owned(), unquote(&raw)?));
        i = end + 1;
    }
}

/// `LIKE` matching (`%` any run, `_` one char), case-insensitive.
pub fn like(value: &str, pattern: &str) -> bool {
    fn go(v: &[char], p: &[char]) -> bool {
        match p.first() {
            None => v.is_empty(),
            Some('%') => (0..=v.len()).any(|i| go(&v[i..], &p[1..])),
            Some('_') => !v.is_empty() && go(&v[1..], &p[1..]),
            Some(c) => v.first().is_some_and(|x| x.eq_ignore_ascii_case(c)) && go(&v[1..], &p[1..]),
        }
    }
    let v: Vec<char> = value.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    go(&v, &p)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_select_with_and_like_and_escaped_backslashes() {
        let q =
            parse(r"SELECT * FROM CIM_DataFile WHERE Drive='E:' AND Path='\\VMs\\vm1\\'").unwrap();
        assert_eq!(
            q,
            Query::Select {
                class: "CIM_DataFile".into(),
                conds: vec![
                    Cond::Eq("Drive".into(), "E:".into()),
                    Cond::Eq("Path".into(), r"\VMs\vm1\".into())
                ]
            }
        );
        let q = parse(
            "SELECT * FROM Msvm_StorageAllocationSettingData WHERE InstanceID LIKE 'Microsoft:G1%'",
        )
        .unwrap();
        assert_eq!(
            q,
            Query::Select {
                class: "Msvm_StorageAllocationSettingData".into(),
                conds: vec![Cond::Like("InstanceID".into(), "Microsoft:G1%".into())]
            }
        );
    }

    #[test]
    fn parses_associators_of() {
        let q = parse(r#"ASSOCIATORS OF {Win32_Directory.Name="e:\\vms\\a"} WHERE AssocClass=Win32_Subdirectory ResultRole=PartComponent"#).unwrap();
        assert_eq!(
            q,
            Query::Associators {
                class: "Win32_Directory".into(),
                keys: vec![("Name".into(), r"e:\vms\a".into())],
                assoc_class: Some("Win32_Subdirectory".into()),
                result_class: None,
                result_role: Some("PartComponent".into())
            }
        );
        let q = parse(r#"ASSOCIATORS OF {Msvm_ComputerSystem.CreationClassName="Msvm_ComputerSystem",Name="G"} WHERE AssocClass=Msvm_SettingsDefineState ResultClass=Msvm_VirtualSystemSettingData"#).unwrap();
        match q {
            Query::Associators { keys, .. } => assert_eq!(keys.len(), 2),
            _ => panic!("not associators"),
        }
    }

    #[test]
    fn like_matches_percent_and_underscore() {
        assert!(like("Microsoft:G1\\abc", "microsoft:g1%"));
        assert!(!like("Microsoft:G2", "Microsoft:G1%"));
        assert!(like("ab", "a_"));
    }
}
