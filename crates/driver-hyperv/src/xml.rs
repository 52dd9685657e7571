//! A small namespace-aware XML tree built with quick-xml, and the escaping used when writing.
//!
//! WS-Management messages are small (a few KiB to a few hundred KiB), so the client and the fake
//! parse each whole message into an [`Element`] tree and walk it, which keeps the SOAP code short.
//! Names are compared by namespace URI and local name, never by prefix: Hyper-V, pypsrp and this
//! crate all choose different prefixes.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

/// An XML parse error.
#[derive(Debug, thiserror::Error)]
#[error("malformed XML: {0}")]
pub struct XmlError(pub String);

/// One attribute: namespace URI (empty when unqualified), local name, value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    /// Namespace URI, empty when the attribute has no prefix.
    pub ns: String,
    /// Local name.
    pub name: String,
    /// Unescaped value.
    pub value: String,
}

/// An element: its resolved name, attributes, child elements and direct text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Element {
    /// Namespace URI (empty when unbound).
    pub ns: String,
    /// Local name.
    pub name: String,
    /// Attributes (namespace declarations left out).
    pub attrs: Vec<Attr>,
    /// Child elements, in order.
    pub children: Vec<Element>,
    /// The concatenated text directly inside this element (unescaped, CDATA included).
    pub text: String,
}

/// The XML Schema instance namespace (`xsi:nil`, `xsi:type`).
pub const NS_XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

impl Element {
    /// The first child with this local name (any namespace).
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }
    /// The first child with this namespace and local name.
    pub fn child_ns(&self, ns: &str, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.ns == ns && c.name == name)
    }
    /// Every child with this local name.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
    /// The first descendant (depth first, self excluded) with this local name.
    pub fn find(&self, name: &str) -> Option<&Element> {
        for c in &self.children {
            if c.name == name {
                return Some(c);
            }
            if let Some(f) = c.find(name) {
                return Some(f);
            }
        }
        None
    }
    /// An attribute's value by local name (any namespace).
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.value.as_str())
    }
    /// An attribute's value by namespace and local name.
    pub fn attr_ns(&self, ns: &str, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.ns == ns && a.name == name)
            .map(|a| a.value.as_str())
    }
    /// Whether `xsi:nil="true"`.
    pub fn is_nil(&self) -> bool {
        matches!(self.attr_ns(NS_XSI, "nil"), Some("true") | Some("1"))
    }
    /// The trimmed text of this element.
    pub fn text_trimmed(&self) -> &str {
        self.text.trim()
    }
}

fn ns_of(r: &ResolveResult<'_>) -> String {
    match r {
        ResolveResult::Bound(ns) => String::from_utf8_lossy(ns.as_ref()).into_owned(),
        _ => String::new(),
    }
}

/// How deep elements may nest. WS-Management answers nest about 15 deep; a deeper document
/// is refused before quick-xml's namespace resolver counts past its `u16` nesting level (it
/// panicked at 65,536: found by `tests/fuzz_parsers.rs`) and before the tree is deep enough for
/// its recursive walks and drop to overflow the stack.
pub const MAX_DEPTH: usize = 256;

/// Parses a whole document and returns its root element.
pub fn parse(input: &str) -> Result<Element, XmlError> {
    let mut reader = NsReader::from_str(input);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let (res, ev) = reader
            .read_resolved_event()
            .map_err(|e| XmlError(e.to_string()))?;
        match ev {
            Event::Start(ref s) | Event::Empty(ref s) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError(format!("elements nested deeper than {MAX_DEPTH}")));
                }
                let mut el = Element {
                    ns: ns_of(&res),
                    name: String::from_utf8_lossy(s.local_name().as_ref()).into_owned(),
                    ..Element::default()
                };
                for a in s.attributes() {
                    let a = a.map_err(|e| XmlError(e.to_string()))?;
                    let key = a.key;
                    if key.as_ref() == b"xmlns" || key.as_ref().starts_with(b"xmlns:") {
                        continue;
                    }
                    let (ares, local) = reader.resolve_attribute(key);
                    let value = a
                        .unescape_value()
                        .map_err(|e| XmlError(e.to_string()))?
                        .into_owned();
                    el.attrs.push(Attr {
                        ns: ns_of(&ares),
                        name: String::from_utf8_lossy(local.as_ref()).into_owned(),
                        value,
                    });
                }
                if matches!(ev, Event::Empty(_)) {
                    attach(&mut stack, &mut root, el);
                } else {
                    stack.push(el);
                }
            }
            Event::End(_) => {
                let el = stack
                    .pop()
                    .ok_or_else(|| XmlError("unbalanced end tag".into()))?;
                attach(&mut stack, &mut root, el);
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    let raw = t.decode().map_err(|e| XmlError(e.to_string()))?;
                    let s =
                        quick_xml::escape::unescape(&raw).map_err(|e| XmlError(e.to_string()))?;
                    top.text.push_str(&s);
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    let s = t.decode().map_err(|e| XmlError(e.to_string()))?;
                    top.text.push_str(&s);
                }
            }
            Event::GeneralRef(r) => {
                if let Some(top) = stack.last_mut() {
                    if let Some(c) = r.resolve_char_ref().map_err(|e| XmlError(e.to_string()))? {
                        top.text.push(c);
                    } else {
                        let name = r.decode().map_err(|e| XmlError(e.to_string()))?;
                        let v = quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| XmlError(format!("unknown entity &{name};")))?;
                        top.text.push_str(v);
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(XmlError("unexpected end of document".into()));
    }
    root.ok_or_else(|| XmlError("no root element".into()))
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, el: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None => {
            if root.is_none() {
                *root = Some(el);
            }
        }
    }
}

/// Escapes text or an attribute value (`&`, `<`, `>`, `"`, `'`).
pub fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn resolves_namespaces_not_prefixes() {
        let doc = r#"<a:Root xmlns:a="urn:x" xmlns:b="urn:y"><b:Kid b:at="1 &amp; 2">t &lt; u</b:Kid><Plain/></a:Root>"#;
        let root = parse(doc).unwrap();
        assert_eq!(root.ns, "urn:x");
        let kid = root.child_ns("urn:y", "Kid").unwrap();
        assert_eq!(kid.text, "t < u");
        assert_eq!(kid.attr_ns("urn:y", "at"), Some("1 & 2"));
        assert_eq!(root.child("Plain").unwrap().ns, "");
    }

    #[test]
    fn rejects_unbalanced_documents() {
        assert!(parse("<a><b></a>").is_err());
        assert!(parse("<a>").is_err());
    }

    #[test]
    fn documents_nested_deeper_than_the_limit_are_refused() {
        let ok = format!("{}{}", "<a>".repeat(MAX_DEPTH), "</a>".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
        let deep = format!(
            "{}{}",
            "<a>".repeat(MAX_DEPTH + 1),
            "</a>".repeat(MAX_DEPTH + 1)
        );
        assert!(parse(&deep).unwrap_err().0.contains("nested deeper"));
    }

    #[test]
    fn reads_char_references_and_cdata() {
        let root = parse("<a>x&#65;<![CDATA[<i>]]></a>").unwrap();
        assert_eq!(root.text, "xA<i>");
    }
}
