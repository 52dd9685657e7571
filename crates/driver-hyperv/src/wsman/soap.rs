//! SOAP envelopes: the requests the client sends and the parsing of what comes back.
//!
//! Every builder takes the message id, so golden tests can pin the whole envelope.

use crate::cim::{CimInstance, CimValue, Epr, NS_ADDRESSING, NS_WSMAN, write_wsman_value};
use crate::xml::{Element, NS_XSI, esc};
use std::fmt::Write as _;

/// SOAP 1.2.
pub const NS_SOAP: &str = "http://www.w3.org/2003/05/soap-envelope";
/// WS-Enumeration.
pub const NS_ENUM: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration";
/// Microsoft's WS-Management extensions.
pub const NS_MSWSMAN: &str = "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd";
/// Microsoft's WSManFault detail.
pub const NS_WSMANFAULT: &str = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault";
/// The WQL filter dialect.
pub const WQL_DIALECT: &str = "http://schemas.microsoft.com/wbem/wsman/1/WQL";
/// Enumerate action.
pub const ACTION_ENUMERATE: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Enumerate";
/// Pull action.
pub const ACTION_PULL: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Pull";
/// Release action.
pub const ACTION_RELEASE: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Release";
/// WS-Transfer Get.
pub const ACTION_GET: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Get";
/// The WS-Management fault action.
pub const ACTION_FAULT: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault";
/// WSManFault code of an operation timeout.
pub const CODE_OPERATION_TIMEOUT: u64 = 2_150_858_793;

/// Fixed header values of one session.
#[derive(Clone, Debug)]
pub struct HeaderParams {
    /// `a:To` (the endpoint URL).
    pub to: String,
    /// `w:OperationTimeout` in seconds.
    pub operation_timeout_secs: u64,
    /// `w:MaxEnvelopeSize`.
    pub max_envelope_size: u32,
}

fn header(
    out: &mut String,
    h: &HeaderParams,
    action: &str,
    resource_uri: &str,
    message_id: &str,
    selectors: &[(String, String)],
) {
    let _ = write!(
        out,
        "<s:Envelope xmlns:s=\"{NS_SOAP}\" xmlns:a=\"{NS_ADDRESSING}\" xmlns:n=\"{NS_ENUM}\" xmlns:w=\"{NS_WSMAN}\" xmlns:p=\"{NS_MSWSMAN}\" xmlns:xsi=\"{NS_XSI}\">\
<s:Header>\
<a:To>{to}</a:To>\
<w:ResourceURI s:mustUnderstand=\"true\">{uri}</w:ResourceURI>\
<a:ReplyTo><a:Address s:mustUnderstand=\"true\">{anon}</a:Address></a:ReplyTo>\
<a:Action s:mustUnderstand=\"true\">{action}</a:Action>\
<w:MaxEnvelopeSize s:mustUnderstand=\"true\">{max}</w:MaxEnvelopeSize>\
<a:MessageID>{mid}</a:MessageID>\
<w:Locale xml:lang=\"en-US\" s:mustUnderstand=\"false\"/>\
<p:DataLocale xml:lang=\"en-US\" s:mustUnderstand=\"false\"/>\
<w:OperationTimeout>PT{secs}.000S</w:OperationTimeout>",
        to = esc(&h.to),
        uri = esc(resource_uri),
        anon = crate::cim::ANONYMOUS,
        action = esc(action),
        max = h.max_envelope_size,
        mid = esc(message_id),
        secs = h.operation_timeout_secs,
    );
    if !selectors.is_empty() {
        out.push_str("<w:SelectorSet>");
        for (k, v) in selectors {
            let _ = write!(
                out,
                "<w:Selector Name=\"{}\">{}</w:Selector>",
                esc(k),
                esc(v)
            );
        }
        out.push_str("</w:SelectorSet>");
    }
    out.push_str("</s:Header>");
}

/// An Enumerate with a WQL filter, optimized, objects with their EPRs.
pub fn enumerate(
    h: &HeaderParams,
    message_id: &str,
    resource_uri: &str,
    wql: &str,
    max_elements: u32,
) -> String {
    let mut out = String::new();
    header(&mut out, h, ACTION_ENUMERATE, resource_uri, message_id, &[]);
    let _ = write!(
        out,
        "<s:Body><n:Enumerate><w:OptimizeEnumeration/><w:MaxElements>{max_elements}</w:MaxElements>\
<w:Filter Dialect=\"{WQL_DIALECT}\">{}</w:Filter><w:EnumerationMode>EnumerateObjectAndEPR</w:EnumerationMode>\
</n:Enumerate></s:Body></s:Envelope>",
        esc(wql)
    );
    out
}

/// A Pull on an enumeration context.
pub fn pull(
    h: &HeaderParams,
    message_id: &str,
    resource_uri: &str,
    context: &str,
    max_elements: u32,
) -> String {
    let mut out = String::new();
    header(&mut out, h, ACTION_PULL, resource_uri, message_id, &[]);
    let _ = write!(
        out,
        "<s:Body><n:Pull><n:EnumerationContext>{}</n:EnumerationContext><n:MaxElements>{max_elements}</n:MaxElements></n:Pull></s:Body></s:Envelope>",
        esc(context)
    );
    out
}

/// A WS-Transfer Get of one instance.
pub fn get(h: &HeaderParams, message_id: &str, epr: &Epr) -> String {
    let mut out = String::new();
    header(
        &mut out,
        h,
        ACTION_GET,
        &epr.resource_uri,
        message_id,
        &epr.selectors,
    );
    out.push_str("<s:Body/></s:Envelope>");
    out
}

/// One input parameter of an Invoke.
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    /// A plain value (arrays repeat the element).
    Value(CimValue),
    /// A reference to an instance (`a:Address` + `a:ReferenceParameters`).
    Ref(Epr),
    /// An embedded instance, sent as CIM-XML text.
    Embedded(CimInstance),
    /// An array of embedded instances (one element per instance).
    EmbeddedArray(Vec<CimInstance>),
}

/// An Invoke of `method` on the instance `target` names.
pub fn invoke(
    h: &HeaderParams,
    message_id: &str,
    target: &Epr,
    method: &str,
    params: &[(String, Param)],
) -> String {
    let mut out = String::new();
    let action = format!("{}/{}", target.resource_uri, method);
    header(
        &mut out,
        h,
        &action,
        &target.resource_uri,
        message_id,
        &target.selectors,
    );
    let _ = write!(
        out,
        "<s:Body><p:{method}_INPUT xmlns:p=\"{}\">",
        esc(&target.resource_uri)
    );
    for (name, p) in params {
        match p {
            Param::Value(v) => write_wsman_value(&mut out, name, v),
            Param::Ref(e) => {
                let _ = write!(out, "<p:{name}>");
                e.write_children(&mut out);
                let _ = write!(out, "</p:{name}>");
            }
            Param::Embedded(i) => {
                let _ = write!(out, "<p:{name}>{}</p:{name}>", esc(&i.to_cim_xml()));
            }
            Param::EmbeddedArray(items) => {
                for i in items {
                    let _ = write!(out, "<p:{name}>{}</p:{name}>", esc(&i.to_cim_xml()));
                }
            }
        }
    }
    let _ = write!(out, "</p:{method}_INPUT></s:Body></s:Envelope>");
    out
}

/// A fault or an unusable answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SoapError {
    /// The service answered with a SOAP fault.
    #[error(
        "WS-Management fault {subcode} (code {code:?}): {reason}{}",
        wmi_words(wmi)
    )]
    Fault {
        /// `s:Subcode/s:Value` (`w:TimedOut`, `w:InvalidSelectors`...).
        subcode: String,
        /// `WSManFault/@Code`, when present.
        code: Option<u64>,
        /// The reason or the WSManFault message.
        reason: String,
        /// The WMI provider's own error (`MSFT_WmiError` in `s:Detail`), when it sent one.
        wmi: Option<Box<WmiError>>,
    },
    /// The answer is not a SOAP envelope we understand.
    #[error("unexpected WS-Management answer: {0}")]
    Malformed(String),
    /// `RelatesTo` does not name our `MessageID`.
    #[error("the answer relates to message {got}, not to {expected}")]
    WrongRelatesTo {
        /// Our id.
        expected: String,
        /// Theirs.
        got: String,
    },
}

/// The detail a WMI provider puts in a fault: an `MSFT_WmiError` instance in `s:Detail`
/// (shape: pypsrp's `test_wsman_fault_wmi_error_detail` fixture, and the WinRM Ruby gem's
/// `raise_if_wmi_error`, which read `error_Code` and `Message`; `CIMStatusCode` and `MessageID`
/// are `CIM_Error` properties, Msvm_Error/CIM_Error class reference).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WmiError {
    /// `error_Code`: an HRESULT (`0x80041002` WBEM_E_NOT_FOUND...).
    pub code: Option<u64>,
    /// `Message`.
    pub message: String,
    /// `CIMStatusCode` (CIM_ERR_*: 2 access denied, 4 invalid parameter, 6 not found...).
    pub cim_status: Option<u32>,
    /// `MessageID` (`HRESULT 0x80041002`).
    pub message_id: Option<String>,
}

/// HRESULTs of `error_Code` that mean "try again later" (WMI error constants, Microsoft's
/// "WMI Error Constants" page: WBEM_E_OUT_OF_MEMORY, WBEM_E_TRANSPORT_FAILURE,
/// WBEM_E_SERVER_TOO_BUSY, WBEM_E_QUOTA_VIOLATION, WBEM_E_TIMED_OUT). Every other WMI error is
/// an answer about the request itself and does not change by asking again.
pub const WMI_TRANSIENT: [u64; 5] = [
    0x8004_1006,
    0x8004_1015,
    0x8004_1045,
    0x8004_106C,
    0x8004_3001,
];

impl WmiError {
    /// Whether asking again later may succeed ([`WMI_TRANSIENT`]).
    pub fn is_transient(&self) -> bool {
        self.code.is_some_and(|c| WMI_TRANSIENT.contains(&c))
    }

    /// Whether WMI refused the request before any work (WBEM_E_SERVER_TOO_BUSY,
    /// WBEM_E_QUOTA_VIOLATION): a state-changing call that got it certainly did not happen.
    pub fn refused_before_work(&self) -> bool {
        matches!(self.code, Some(0x8004_1045 | 0x8004_106C))
    }
}

fn wmi_words(w: &Option<Box<WmiError>>) -> String {
    match w {
        None => String::new(),
        Some(w) => {
            let mut out = String::from("; WMI error");
            if let Some(c) = w.code {
                out.push_str(&format!(" 0x{c:08X}"));
            }
            if let Some(c) = w.cim_status {
                out.push_str(&format!(" (CIM status {c})"));
            }
            if !w.message.is_empty() {
                out.push_str(": ");
                out.push_str(&w.message);
            }
            out
        }
    }
}

/// Reads an `MSFT_WmiError` element (its children by local name; `xsi:nil` ones are absent).
fn parse_wmi_error(e: &Element) -> WmiError {
    let text = |n: &str| {
        e.child(n)
            .filter(|c| !c.is_nil())
            .map(|c| c.text_trimmed().to_owned())
            .filter(|t| !t.is_empty())
    };
    WmiError {
        code: text("error_Code").and_then(|t| t.parse().ok()),
        message: text("Message")
            .or_else(|| text("error_WindowsErrorMessage"))
            .unwrap_or_default(),
        cim_status: text("CIMStatusCode").and_then(|t| t.parse().ok()),
        message_id: text("MessageID"),
    }
}

impl SoapError {
    /// The WMI error the fault carries, if any.
    pub fn wmi(&self) -> Option<&WmiError> {
        match self {
            SoapError::Fault { wmi, .. } => wmi.as_deref(),
            _ => None,
        }
    }

    /// Whether this is the service's operation timeout (2150858793).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            SoapError::Fault {
                code: Some(CODE_OPERATION_TIMEOUT),
                ..
            }
        ) || matches!(self, SoapError::Fault { subcode, .. } if subcode.ends_with("TimedOut"))
    }
}

/// Parses a response envelope: checks RelatesTo against our MessageID, turns a fault into an
/// error, and returns the Body element.
pub fn parse_response(text: &str, message_id: &str) -> Result<Element, SoapError> {
    let env = crate::xml::parse(text).map_err(|e| SoapError::Malformed(e.to_string()))?;
    if env.ns != NS_SOAP || env.name != "Envelope" {
        return Err(SoapError::Malformed(format!(
            "root element is {}",
            env.name
        )));
    }
    let body = env
        .child_ns(NS_SOAP, "Body")
        .ok_or_else(|| SoapError::Malformed("no Body".into()))?;
    if let Some(fault) = body.child_ns(NS_SOAP, "Fault") {
        return Err(parse_fault(fault));
    }
    let relates = env
        .child_ns(NS_SOAP, "Header")
        .and_then(|h| h.child_ns(NS_ADDRESSING, "RelatesTo"))
        .map(|r| r.text_trimmed().to_owned());
    match relates {
        Some(r) if r == message_id => {}
        Some(r) => {
            return Err(SoapError::WrongRelatesTo {
                expected: message_id.to_owned(),
                got: r,
            });
        }
        None => {
            return Err(SoapError::WrongRelatesTo {
                expected: message_id.to_owned(),
                got: String::new(),
            });
        }
    }
    Ok(body.clone())
}

/// Reads a `s:Fault`.
pub fn parse_fault(fault: &Element) -> SoapError {
    let subcode = fault
        .child("Code")
        .and_then(|c| c.child("Subcode"))
        .and_then(|s| s.child("Value"))
        .map(|v| v.text_trimmed().to_owned())
        .unwrap_or_default();
    let mut reason = fault
        .child("Reason")
        .and_then(|r| r.child("Text"))
        .map(|t| t.text_trimmed().to_owned())
        .unwrap_or_default();
    let wf = fault.find("WSManFault");
    let code = wf
        .and_then(|w| w.attr("Code"))
        .and_then(|c| c.trim().parse().ok());
    if let Some(msg) = wf.and_then(|w| w.child("Message")) {
        let m = msg.text_trimmed();
        let m = if m.is_empty() {
            msg.find("Message").map(|x| x.text_trimmed()).unwrap_or("")
        } else {
            m
        };
        if !m.is_empty() {
            reason = m.to_owned();
        }
    }
    let wmi = fault
        .child("Detail")
        .and_then(|d| d.find("MSFT_WmiError"))
        .map(|e| Box::new(parse_wmi_error(e)));
    if reason.is_empty() {
        if let Some(w) = &wmi {
            reason = w.message.clone();
        }
    }
    SoapError::Fault {
        subcode,
        code,
        reason,
        wmi,
    }
}

/// Items of an Enumerate or Pull response body: instances with their EPRs, the context to pull
/// with next, and whether the sequence ended.
#[derive(Debug, Default)]
pub struct Page {
    /// The instances of this page.
    pub items: Vec<CimInstance>,
    /// The context for the next Pull.
    pub context: Option<String>,
    /// `EndOfSequence` was present.
    pub end: bool,
}

/// Parses an EnumerateResponse or PullResponse body.
pub fn parse_page(body: &Element) -> Result<Page, SoapError> {
    let resp = body
        .children
        .iter()
        .find(|c| c.name == "EnumerateResponse" || c.name == "PullResponse")
        .ok_or_else(|| SoapError::Malformed("no EnumerateResponse or PullResponse".into()))?;
    let mut page = Page {
        context: resp
            .child("EnumerationContext")
            .map(|c| c.text_trimmed().to_owned())
            .filter(|c| !c.is_empty()),
        end: resp.child("EndOfSequence").is_some(),
        items: Vec::new(),
    };
    if let Some(items) = resp.child("Items") {
        for it in &items.children {
            if it.name == "Item" {
                // EnumerateObjectAndEPR: <w:Item><p:Class>..</p:Class><a:EndpointReference>..</..></w:Item>
                let obj = it.children.iter().find(|c| c.name != "EndpointReference");
                let epr = it.child("EndpointReference").and_then(Epr::from_element);
                if let Some(obj) = obj {
                    let mut inst = CimInstance::from_wsman(obj);
                    inst.epr = epr;
                    page.items.push(inst);
                }
            } else if it.name == "EndpointReference" {
                continue;
            } else {
                page.items.push(CimInstance::from_wsman(it));
            }
        }
    }
    Ok(page)
}

/// Parses a `<p:Method_OUTPUT>` into an instance (ReturnValue, out parameters, references).
pub fn parse_output(body: &Element, method: &str) -> Result<CimInstance, SoapError> {
    let name = format!("{method}_OUTPUT");
    let out = body
        .child(&name)
        .ok_or_else(|| SoapError::Malformed(format!("no {name}")))?;
    Ok(CimInstance::from_wsman(out))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::cim::class_uri;

    fn h() -> HeaderParams {
        HeaderParams {
            to: "http://hv1:5985/wsman".into(),
            operation_timeout_secs: 60,
            max_envelope_size: 512000,
        }
    }

    const HEAD: &str = "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\" xmlns:a=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\" xmlns:n=\"http://schemas.xmlsoap.org/ws/2004/09/enumeration\" xmlns:w=\"http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd\" xmlns:p=\"http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><s:Header><a:To>http://hv1:5985/wsman</a:To>";

    #[test]
    fn golden_enumerate_uses_wildcard_uri_wql_optimize_and_epr_mode() {
        let uri = class_uri("root/virtualization/v2", "*");
        let got = enumerate(
            &h(),
            "uuid:00000000-0000-0000-0000-000000000001",
            &uri,
            "SELECT * FROM Msvm_ComputerSystem WHERE Caption='Virtual Machine'",
            32000,
        );
        let want = format!(
            "{HEAD}<w:ResourceURI s:mustUnderstand=\"true\">http://schemas.microsoft.com/wbem/wsman/1/wmi/root/virtualization/v2/*</w:ResourceURI>\
<a:ReplyTo><a:Address s:mustUnderstand=\"true\">http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo>\
<a:Action s:mustUnderstand=\"true\">http://schemas.xmlsoap.org/ws/2004/09/enumeration/Enumerate</a:Action>\
<w:MaxEnvelopeSize s:mustUnderstand=\"true\">512000</w:MaxEnvelopeSize>\
<a:MessageID>uuid:00000000-0000-0000-0000-000000000001</a:MessageID>\
<w:Locale xml:lang=\"en-US\" s:mustUnderstand=\"false\"/><p:DataLocale xml:lang=\"en-US\" s:mustUnderstand=\"false\"/>\
<w:OperationTimeout>PT60.000S</w:OperationTimeout></s:Header>\
<s:Body><n:Enumerate><w:OptimizeEnumeration/><w:MaxElements>32000</w:MaxElements>\
<w:Filter Dialect=\"http://schemas.microsoft.com/wbem/wsman/1/WQL\">SELECT * FROM Msvm_ComputerSystem WHERE Caption=&apos;Virtual Machine&apos;</w:Filter>\
<w:EnumerationMode>EnumerateObjectAndEPR</w:EnumerationMode></n:Enumerate></s:Body></s:Envelope>"
        );
        assert_eq!(got, want);
        // and it is well-formed XML whose filter reads back unescaped
        let env = crate::xml::parse(&got).unwrap();
        assert_eq!(
            env.find("Filter").unwrap().text,
            "SELECT * FROM Msvm_ComputerSystem WHERE Caption='Virtual Machine'"
        );
    }

    #[test]
    fn golden_pull_and_get() {
        let uri = class_uri("root/virtualization/v2", "*");
        let got = pull(&h(), "uuid:2", &uri, "uuid:ctx-9", 32000);
        assert!(got.contains("<a:Action s:mustUnderstand=\"true\">http://schemas.xmlsoap.org/ws/2004/09/enumeration/Pull</a:Action>"));
        assert!(got.ends_with("<s:Body><n:Pull><n:EnumerationContext>uuid:ctx-9</n:EnumerationContext><n:MaxElements>32000</n:MaxElements></n:Pull></s:Body></s:Envelope>"));
        let job = Epr::new(
            class_uri("root/virtualization/v2", "Msvm_ConcreteJob"),
            vec![("InstanceID".into(), "J-1".into())],
        );
        let got = get(&h(), "uuid:3", &job);
        assert!(got.contains("<w:ResourceURI s:mustUnderstand=\"true\">http://schemas.microsoft.com/wbem/wsman/1/wmi/root/virtualization/v2/Msvm_ConcreteJob</w:ResourceURI>"));
        assert!(got.contains("<w:SelectorSet><w:Selector Name=\"InstanceID\">J-1</w:Selector></w:SelectorSet></s:Header><s:Body/></s:Envelope>"));
    }

    #[test]
    fn golden_invoke_migrate_with_selectors_ref_and_embedded_params() {
        let svc_uri = class_uri(
            "root/virtualization/v2",
            "Msvm_VirtualSystemMigrationService",
        );
        let svc = Epr::new(
            svc_uri.clone(),
            vec![
                (
                    "CreationClassName".into(),
                    "Msvm_VirtualSystemMigrationService".into(),
                ),
                ("Name".into(), "migrationwmi".into()),
                (
                    "SystemCreationClassName".into(),
                    "Msvm_ComputerSystem".into(),
                ),
                ("SystemName".into(), "HV1".into()),
            ],
        );
        let vm = Epr::new(
            class_uri("root/virtualization/v2", "Msvm_ComputerSystem"),
            vec![
                ("CreationClassName".into(), "Msvm_ComputerSystem".into()),
                ("Name".into(), "GUID-1".into()),
            ],
        );
        let msd = CimInstance::new("Msvm_VirtualSystemMigrationSettingData")
            .with("MigrationType", CimValue::U16(32771));
        let got = invoke(
            &h(),
            "uuid:4",
            &svc,
            "MigrateVirtualSystemToHost",
            &[
                ("ComputerSystem".into(), Param::Ref(vm)),
                (
                    "DestinationHost".into(),
                    Param::Value(CimValue::String("hv2".into())),
                ),
                ("MigrationSettingData".into(), Param::Embedded(msd)),
            ],
        );
        assert!(got.contains(&format!(
            "<a:Action s:mustUnderstand=\"true\">{svc_uri}/MigrateVirtualSystemToHost</a:Action>"
        )));
        assert!(got.contains("<w:SelectorSet><w:Selector Name=\"CreationClassName\">Msvm_VirtualSystemMigrationService</w:Selector><w:Selector Name=\"Name\">migrationwmi</w:Selector><w:Selector Name=\"SystemCreationClassName\">Msvm_ComputerSystem</w:Selector><w:Selector Name=\"SystemName\">HV1</w:Selector></w:SelectorSet>"));
        let body = format!(
            "<s:Body><p:MigrateVirtualSystemToHost_INPUT xmlns:p=\"{svc_uri}\">\
<p:ComputerSystem><a:Address>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address><a:ReferenceParameters>\
<w:ResourceURI>http://schemas.microsoft.com/wbem/wsman/1/wmi/root/virtualization/v2/Msvm_ComputerSystem</w:ResourceURI>\
<w:SelectorSet><w:Selector Name=\"CreationClassName\">Msvm_ComputerSystem</w:Selector><w:Selector Name=\"Name\">GUID-1</w:Selector></w:SelectorSet></a:ReferenceParameters></p:ComputerSystem>\
<p:DestinationHost>hv2</p:DestinationHost>\
<p:MigrationSettingData>&lt;INSTANCE CLASSNAME=&quot;Msvm_VirtualSystemMigrationSettingData&quot;&gt;&lt;PROPERTY NAME=&quot;MigrationType&quot; TYPE=&quot;uint16&quot;&gt;&lt;VALUE&gt;32771&lt;/VALUE&gt;&lt;/PROPERTY&gt;&lt;/INSTANCE&gt;</p:MigrationSettingData>\
</p:MigrateVirtualSystemToHost_INPUT></s:Body></s:Envelope>"
        );
        assert!(got.ends_with(&body), "{got}");
        // The embedded instance survives the trip through XML text.
        let env = crate::xml::parse(&got).unwrap();
        let text = &env.find("MigrationSettingData").unwrap().text;
        assert_eq!(
            CimInstance::from_cim_xml(text)
                .unwrap()
                .get_u32("MigrationType"),
            Some(32771)
        );
    }

    #[test]
    fn fault_with_wsmanfault_code_is_parsed_and_timeout_recognised() {
        let text = format!(
            "<s:Envelope xmlns:s=\"{NS_SOAP}\" xmlns:a=\"{NS_ADDRESSING}\" xmlns:w=\"{NS_WSMAN}\"><s:Header><a:RelatesTo>uuid:1</a:RelatesTo></s:Header><s:Body><s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>w:TimedOut</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang=\"en-US\">The WS-Management service cannot complete the operation within the time specified in OperationTimeout.</s:Text></s:Reason><s:Detail><f:WSManFault xmlns:f=\"{NS_WSMANFAULT}\" Code=\"2150858793\" Machine=\"hv1\"><f:Message>timed out</f:Message></f:WSManFault></s:Detail></s:Fault></s:Body></s:Envelope>"
        );
        let err = parse_response(&text, "uuid:1").unwrap_err();
        assert!(err.is_timeout());
        assert_eq!(
            err,
            SoapError::Fault {
                subcode: "w:TimedOut".into(),
                code: Some(2150858793),
                reason: "timed out".into(),
                wmi: None,
            }
        );
    }

    #[test]
    fn a_wmi_error_fault_is_read_with_its_code_status_and_message() {
        // The shape WinRM answers a WMI provider error with (pypsrp's WMI error fixture): an
        // MSFT_WmiError in s:Detail, no WSManFault.
        let text = format!(
            "<s:Envelope xmlns:s=\"{NS_SOAP}\" xmlns:a=\"{NS_ADDRESSING}\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><s:Header><a:RelatesTo>uuid:1</a:RelatesTo></s:Header><s:Body><s:Fault>\
<s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>w:InternalError</s:Value></s:Subcode></s:Code>\
<s:Reason><s:Text xml:lang=\"en-US\">Not found </s:Text></s:Reason><s:Detail>\
<p:MSFT_WmiError b:IsCIM_Error=\"true\" xmlns:b=\"http://schemas.dmtf.org/wbem/wsman/1/cimbinding.xsd\" xmlns:p=\"http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/MSFT_WmiError\">\
<p:CIMStatusCode>6</p:CIMStatusCode><p:CIMStatusCodeDescription xsi:nil=\"true\"/>\
<p:Message>Not found </p:Message><p:MessageID>HRESULT 0x80041002</p:MessageID>\
<p:error_Code>2147749890</p:error_Code><p:error_Type>HRESULT</p:error_Type>\
</p:MSFT_WmiError></s:Detail></s:Fault></s:Body></s:Envelope>"
        );
        let err = parse_response(&text, "uuid:1").unwrap_err();
        let w = err.wmi().unwrap();
        assert_eq!(w.code, Some(0x8004_1002));
        assert_eq!(w.cim_status, Some(6));
        assert_eq!(w.message, "Not found");
        assert_eq!(w.message_id.as_deref(), Some("HRESULT 0x80041002"));
        assert!(!w.is_transient());
        let shown = err.to_string();
        assert!(shown.contains("w:InternalError"), "{shown}");
        assert!(
            shown.contains("WMI error 0x80041002 (CIM status 6): Not found"),
            "{shown}"
        );
        // A WSManFault alone carries no WMI error.
        let plain = format!(
            "<s:Envelope xmlns:s=\"{NS_SOAP}\"><s:Body><s:Fault><s:Reason><s:Text>x</s:Text></s:Reason></s:Fault></s:Body></s:Envelope>"
        );
        assert_eq!(parse_response(&plain, "uuid:1").unwrap_err().wmi(), None);
    }

    #[test]
    fn relates_to_mismatch_is_refused() {
        let text = format!(
            "<s:Envelope xmlns:s=\"{NS_SOAP}\" xmlns:a=\"{NS_ADDRESSING}\"><s:Header><a:RelatesTo>uuid:other</a:RelatesTo></s:Header><s:Body/></s:Envelope>"
        );
        assert!(matches!(
            parse_response(&text, "uuid:mine"),
            Err(SoapError::WrongRelatesTo { .. })
        ));
    }

    #[test]
    fn page_with_items_and_eprs() {
        let text = format!(
            "<s:Envelope xmlns:s=\"{NS_SOAP}\" xmlns:a=\"{NS_ADDRESSING}\" xmlns:w=\"{NS_WSMAN}\" xmlns:n=\"{NS_ENUM}\"><s:Header><a:RelatesTo>uuid:1</a:RelatesTo></s:Header><s:Body><n:EnumerateResponse><n:EnumerationContext>uuid:c</n:EnumerationContext><w:Items><w:Item><p:Msvm_ComputerSystem xmlns:p=\"urn:cs\"><p:Name>G1</p:Name></p:Msvm_ComputerSystem><a:EndpointReference><a:Address>{}</a:Address><a:ReferenceParameters><w:ResourceURI>urn:cs</w:ResourceURI><w:SelectorSet><w:Selector Name=\"Name\">G1</w:Selector></w:SelectorSet></a:ReferenceParameters></a:EndpointReference></w:Item></w:Items></n:EnumerateResponse></s:Body></s:Envelope>",
            crate::cim::ANONYMOUS
        );
        let body = parse_response(&text, "uuid:1").unwrap();
        let page = parse_page(&body).unwrap();
        assert_eq!(page.context.as_deref(), Some("uuid:c"));
        assert!(!page.end);
        assert_eq!(page.items.len(), 1);
        assert_eq!(
            page.items[0].epr.as_ref().unwrap().selector("Name"),
            Some("G1")
        );
    }
}
