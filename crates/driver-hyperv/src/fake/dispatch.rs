//! The fake's WS-Management side: SOAP envelopes and faults, and the dispatch of each action
//! (Enumerate/Pull with WQL, Get, Invoke) to the world's operations.

use super::keytab;
use super::world::{FakeWmiError, Fault, World};
use crate::cim::{ANONYMOUS, CimValue, NS_ADDRESSING, NS_CIM, NS_WSMAN, write_wsman_value};
use crate::wsman::soap::{NS_ENUM, NS_SOAP, NS_WSMANFAULT};
use crate::xml::{Element, NS_XSI, esc};
use hyper::StatusCode;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

/// What a host's listener serves with: the shared world, the host's key in it, and the
/// credentials it accepts.
pub(super) struct ServerCtx {
    pub(super) world: Arc<Mutex<World>>,
    pub(super) host: String,
    pub(super) user: String,
    pub(super) password: String,
    pub(super) tls: bool,
    /// This host's Kerberos service principal and key, and the client principal accepted.
    pub(super) kerberos: Option<(keytab::KeytabEntry, String)>,
}

fn envelope(action: &str, relates_to: &str, body: &str) -> String {
    format!(
        "<s:Envelope xmlns:s=\"{NS_SOAP}\" xmlns:a=\"{NS_ADDRESSING}\" xmlns:n=\"{NS_ENUM}\" xmlns:w=\"{NS_WSMAN}\" xmlns:xsi=\"{NS_XSI}\" xmlns:cim=\"{NS_CIM}\" xml:lang=\"en-US\">\
<s:Header><a:To>{ANONYMOUS}</a:To><a:Action>{}</a:Action><a:MessageID>uuid:{}</a:MessageID><a:RelatesTo>{}</a:RelatesTo></s:Header>\
<s:Body>{body}</s:Body></s:Envelope>",
        esc(action),
        uuid::Uuid::new_v4().to_string().to_uppercase(),
        esc(relates_to)
    )
}

fn fault_envelope(relates_to: &str, f: &Fault) -> String {
    let sender = if f.subcode == "w:TimedOut" {
        "s:Receiver"
    } else {
        "s:Sender"
    };
    let body = format!(
        "<s:Fault><s:Code><s:Value>{sender}</s:Value><s:Subcode><s:Value>{}</s:Value></s:Subcode></s:Code>\
<s:Reason><s:Text xml:lang=\"en-US\">{}</s:Text></s:Reason><s:Detail><f:WSManFault xmlns:f=\"{NS_WSMANFAULT}\" Code=\"{}\" Machine=\"fake\"><f:Message>{}</f:Message></f:WSManFault></s:Detail></s:Fault>",
        esc(&f.subcode),
        esc(&f.reason),
        f.code,
        esc(&f.reason)
    );
    envelope(
        "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault",
        relates_to,
        &body,
    )
}

/// A WMI provider error as WinRM answers it (see [`FakeWmiError`]).
fn wmi_fault_envelope(relates_to: &str, e: &FakeWmiError) -> String {
    let body = format!(
        "<s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>w:InternalError</s:Value></s:Subcode></s:Code>\
<s:Reason><s:Text xml:lang=\"en-US\">{msg} </s:Text></s:Reason><s:Detail>\
<p:MSFT_WmiError b:IsCIM_Error=\"true\" xmlns:b=\"http://schemas.dmtf.org/wbem/wsman/1/cimbinding.xsd\" xmlns:p=\"http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/MSFT_WmiError\" xsi:type=\"p:MSFT_WmiError_Type\">\
<p:CIMStatusCode xsi:type=\"cim:cimUnsignedInt\">{cim}</p:CIMStatusCode>\
<p:CIMStatusCodeDescription xsi:type=\"cim:cimString\" xsi:nil=\"true\"/>\
<p:ErrorType xsi:type=\"cim:cimUnsignedShort\">0</p:ErrorType>\
<p:Message xsi:type=\"cim:cimString\">{msg} </p:Message>\
<p:MessageID xsi:type=\"cim:cimString\">HRESULT 0x{code:08x}</p:MessageID>\
<p:error_Category xsi:type=\"cim:cimUnsignedInt\">30</p:error_Category>\
<p:error_Code xsi:type=\"cim:cimUnsignedInt\">{code}</p:error_Code>\
<p:error_Type xsi:type=\"cim:cimString\">HRESULT</p:error_Type>\
<p:error_WindowsErrorMessage xsi:type=\"cim:cimString\" xsi:nil=\"true\"/>\
</p:MSFT_WmiError></s:Detail></s:Fault>",
        msg = esc(&e.message),
        cim = e.cim_status,
        code = e.code,
    );
    envelope(
        "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault",
        relates_to,
        &body,
    )
}

fn split_uri(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix(crate::cim::WMI_BASE)?;
    let (ns, class) = rest.rsplit_once('/')?;
    Some((ns.to_owned(), class.to_owned()))
}

fn write_items(out: &mut String, items: &[crate::cim::CimInstance], ns: &str) {
    for i in items {
        out.push_str("<w:Item>");
        out.push_str(&i.to_wsman(ns));
        if let Some(e) = &i.epr {
            out.push_str("<a:EndpointReference>");
            e.write_children(out);
            out.push_str("</a:EndpointReference>");
        }
        out.push_str("</w:Item>");
    }
}

/// Handles one plain SOAP request; returns the HTTP status and the answer.
pub(super) fn dispatch(ctx: &ServerCtx, text: &str) -> (StatusCode, String) {
    let env = match crate::xml::parse(text) {
        Ok(e) => e,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                fault_envelope(
                    "",
                    &Fault {
                        subcode: "w:SchemaValidationError".into(),
                        code: 2_150_858_817,
                        reason: e.to_string(),
                    },
                ),
            );
        }
    };
    let hdr = env.child_ns(NS_SOAP, "Header").cloned().unwrap_or_default();
    let body = env.child_ns(NS_SOAP, "Body").cloned().unwrap_or_default();
    let h = |n: &str| {
        hdr.child(n)
            .map(|e| e.text_trimmed().to_owned())
            .unwrap_or_default()
    };
    let (action, uri, mid) = (h("Action"), h("ResourceURI"), h("MessageID"));
    let selectors: Vec<(String, String)> = hdr
        .child("SelectorSet")
        .map(|ss| {
            ss.children_named("Selector")
                .map(|s| {
                    (
                        s.attr("Name").unwrap_or("").to_owned(),
                        s.text_trimmed().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let injected = ctx
        .world
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .faults
        .wmi_error
        .get_mut(&ctx.host)
        .and_then(|q| q.pop_front());
    if let Some(e) = injected {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            wmi_fault_envelope(&mid, &e),
        );
    }
    let result = dispatch_inner(ctx, &action, &uri, &selectors, &body);
    match result {
        Ok((resp_action, resp_body)) => (StatusCode::OK, envelope(&resp_action, &mid, &resp_body)),
        Err(f) => (StatusCode::INTERNAL_SERVER_ERROR, fault_envelope(&mid, &f)),
    }
}

fn dispatch_inner(
    ctx: &ServerCtx,
    action: &str,
    uri: &str,
    selectors: &[(String, String)],
    body: &Element,
) -> Result<(String, String), Fault> {
    let mut w = ctx.world.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(n) = w.faults.timeout_fault.get_mut(&ctx.host) {
        if *n > 0 {
            *n -= 1;
            return Err(Fault {
                subcode: "w:TimedOut".into(),
                code: crate::wsman::soap::CODE_OPERATION_TIMEOUT,
                reason: "The WS-Management service cannot complete the operation within the time specified in OperationTimeout.".into(),
            });
        }
    }
    let (ns, class) = split_uri(uri).ok_or_else(|| Fault {
        subcode: "w:DestinationUnreachable".into(),
        code: 2_150_858_770,
        reason: format!("unknown resource URI {uri}"),
    })?;
    match action {
        crate::wsman::soap::ACTION_ENUMERATE => {
            let en = body.child("Enumerate").ok_or_else(|| Fault {
                subcode: "w:SchemaValidationError".into(),
                code: 2_150_858_817,
                reason: "no Enumerate".into(),
            })?;
            let filter = en.child("Filter");
            let epr_mode = en
                .child("EnumerationMode")
                .is_some_and(|m| m.text_trimmed() == "EnumerateObjectAndEPR");
            let max = en
                .child("MaxElements")
                .and_then(|m| m.text_trimmed().parse::<usize>().ok())
                .unwrap_or(1);
            let optimize = en.child("OptimizeEnumeration").is_some();
            let mut items = match filter {
                Some(f) => {
                    if class != "*" {
                        // Real hosts fault a WQL filter on a class URI.
                        return Err(Fault {
                            subcode: "w:CannotProcessFilter".into(),
                            code: 2_150_858_752,
                            reason: "A WQL filter needs the wildcard resource URI".into(),
                        });
                    }
                    w.query(&ctx.host, &ns, &f.text)?
                }
                None => {
                    if class == "*" {
                        return Err(Fault {
                            subcode: "w:InvalidParameter".into(),
                            code: 2_150_858_778,
                            reason: "the wildcard URI needs a filter".into(),
                        });
                    }
                    w.query(&ctx.host, &ns, &format!("SELECT * FROM {class}"))?
                }
            };
            if !epr_mode {
                for i in items.iter_mut() {
                    i.epr = None;
                }
            }
            let page = w.page_size.min(max.max(1));
            let first: Vec<_> = if optimize {
                items.drain(..page.min(items.len())).collect()
            } else {
                Vec::new()
            };
            let ctx_id = format!("uuid:{}", uuid::Uuid::new_v4().to_string().to_uppercase());
            let mut out = String::from("<n:EnumerateResponse>");
            let end = items.is_empty();
            if !end {
                w.enumerations.insert(ctx_id.clone(), items.into());
                let _ = write!(out, "<n:EnumerationContext>{ctx_id}</n:EnumerationContext>");
            }
            if optimize {
                out.push_str("<w:Items>");
                write_items(&mut out, &first, &ns_of_items(&ns));
                out.push_str("</w:Items>");
                if end {
                    out.push_str("<w:EndOfSequence/>");
                }
            }
            out.push_str("</n:EnumerateResponse>");
            Ok((
                "http://schemas.xmlsoap.org/ws/2004/09/enumeration/EnumerateResponse".into(),
                out,
            ))
        }
        crate::wsman::soap::ACTION_PULL => {
            let pull = body.child("Pull").ok_or_else(|| Fault {
                subcode: "w:SchemaValidationError".into(),
                code: 2_150_858_817,
                reason: "no Pull".into(),
            })?;
            let ctx_id = pull
                .child("EnumerationContext")
                .map(|c| c.text_trimmed().to_owned())
                .unwrap_or_default();
            let max = pull
                .child("MaxElements")
                .and_then(|m| m.text_trimmed().parse::<usize>().ok())
                .unwrap_or(1);
            let page = w.page_size.min(max.max(1));
            let mut rest = w.enumerations.remove(&ctx_id).ok_or_else(|| Fault {
                subcode: "n:InvalidEnumerationContext".into(),
                code: 2_150_858_797,
                reason: "unknown enumeration context".into(),
            })?;
            let items: Vec<_> = rest.drain(..page.min(rest.len())).collect();
            let mut out = String::from("<n:PullResponse>");
            let end = rest.is_empty();
            if !end {
                w.enumerations.insert(ctx_id.clone(), rest);
                let _ = write!(out, "<n:EnumerationContext>{ctx_id}</n:EnumerationContext>");
            }
            out.push_str("<n:Items>");
            write_items(&mut out, &items, &ns_of_items(&ns));
            out.push_str("</n:Items>");
            if end {
                out.push_str("<n:EndOfSequence/>");
            }
            out.push_str("</n:PullResponse>");
            Ok((
                "http://schemas.xmlsoap.org/ws/2004/09/enumeration/PullResponse".into(),
                out,
            ))
        }
        crate::wsman::soap::ACTION_RELEASE => Ok((
            "http://schemas.xmlsoap.org/ws/2004/09/enumeration/ReleaseResponse".into(),
            String::new(),
        )),
        crate::wsman::soap::ACTION_GET => {
            let inst = w.get(&ctx.host, &ns, &class, selectors)?;
            Ok((
                "http://schemas.xmlsoap.org/ws/2004/09/transfer/GetResponse".into(),
                inst.to_wsman(&ns),
            ))
        }
        a if a.starts_with(uri) && a.len() > uri.len() + 1 => {
            let method = &a[uri.len() + 1..];
            let input_name = format!("{method}_INPUT");
            let input = body.child(&input_name).cloned().unwrap_or_default();
            let out_params = w.invoke(&ctx.host, &class, method, selectors, &input)?;
            let mut out = String::new();
            let _ = write!(
                out,
                "<p:{method}_OUTPUT xmlns:p=\"{}\" xmlns:xsi=\"{NS_XSI}\" xmlns:cim=\"{NS_CIM}\" xmlns:a=\"{NS_ADDRESSING}\" xmlns:w=\"{NS_WSMAN}\">",
                esc(uri)
            );
            for (n, v) in &out_params {
                match v {
                    // Output references are written without xsi:type, as Hyper-V does.
                    CimValue::Ref(e) => {
                        let _ = write!(out, "<p:{n}>");
                        e.write_children(&mut out);
                        let _ = write!(out, "</p:{n}>");
                    }
                    v => write_wsman_value(&mut out, n, v),
                }
            }
            let _ = write!(out, "</p:{method}_OUTPUT>");
            Ok((format!("{a}Response"), out))
        }
        _ => Err(Fault {
            subcode: "w:ActionNotSupported".into(),
            code: 2_150_858_909,
            reason: format!("action {action} is not supported"),
        }),
    }
}

fn ns_of_items(ns: &str) -> String {
    ns.to_owned()
}
