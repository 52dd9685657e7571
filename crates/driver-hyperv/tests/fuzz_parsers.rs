//! Fuzzing of everything the driver parses from a host (issue 12, section 6): the XML tree,
//! SOAP responses (faults, RelatesTo, Enumerate/Pull pages, method output), WS-Man instances,
//! embedded CIM-XML instances, `Msvm_Error`s, job handles, and the encrypted-message framing.
//! Arbitrary bytes and mutations of real messages: no input may panic (or overflow the stack).
//!
//! A short run is part of `cargo test` (64 cases per property, the default here); a longer one:
//! `PROPTEST_CASES=20000 cargo test -p vmove-driver-hyperv --all-features --test integration fuzz_parsers::`.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use vmove_driver_hyperv::cim::CimInstance;
use vmove_driver_hyperv::job::{JobError, JobRef};
use vmove_driver_hyperv::wsman::sealing;
use vmove_driver_hyperv::wsman::soap;

/// Real messages (shapes as WinRM and Hyper-V send them) that the mutations start from.
const SEEDS: &[&str] = &[
    // An EnumerateResponse with an item and its EPR.
    r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" xmlns:n="http://schemas.xmlsoap.org/ws/2004/09/enumeration" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><s:Header><a:RelatesTo>uuid:1</a:RelatesTo></s:Header><s:Body><n:EnumerateResponse><n:EnumerationContext>uuid:c</n:EnumerationContext><w:Items><w:Item><p:Msvm_ComputerSystem xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wmi/root/virtualization/v2/Msvm_ComputerSystem"><p:Name>G1</p:Name><p:OperationalStatus>2</p:OperationalStatus><p:OperationalStatus>32774</p:OperationalStatus><p:OtherEnabledState xsi:nil="true"/><p:InstallDate><cim:Datetime xmlns:cim="http://schemas.dmtf.org/wbem/wscim/1/common">2026-01-01T00:00:00Z</cim:Datetime></p:InstallDate></p:Msvm_ComputerSystem><a:EndpointReference><a:Address>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address><a:ReferenceParameters><w:ResourceURI>http://schemas.microsoft.com/wbem/wsman/1/wmi/root/virtualization/v2/Msvm_ComputerSystem</w:ResourceURI><w:SelectorSet><w:Selector Name="Name">G1</w:Selector></w:SelectorSet></a:ReferenceParameters></a:EndpointReference></w:Item></w:Items><w:EndOfSequence/></n:EnumerateResponse></s:Body></s:Envelope>"#,
    // A method output with a job reference.
    r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"><s:Header><a:RelatesTo>uuid:1</a:RelatesTo></s:Header><s:Body><p:MigrateVirtualSystemToHost_OUTPUT xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wmi/root/virtualization/v2/Msvm_VirtualSystemMigrationService"><p:Job><a:Address>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address><a:ReferenceParameters><w:ResourceURI>http://schemas.microsoft.com/wbem/wsman/1/wmi/root/virtualization/v2/Msvm_MigrationJob</w:ResourceURI><w:SelectorSet><w:Selector Name="InstanceID">J-1</w:Selector></w:SelectorSet></a:ReferenceParameters></p:Job><p:ReturnValue>4096</p:ReturnValue></p:MigrateVirtualSystemToHost_OUTPUT></s:Body></s:Envelope>"#,
    // A fault with a WSManFault and a nested ProviderFault.
    r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode><s:Value>w:SchemaValidationError</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="">Reason.</s:Text></s:Reason><s:Detail><f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" Code="2150859113" Machine="h"><f:Message><f:ProviderFault provider="p" path="x"><f:WSManFault Code="1"><f:Message>inner</f:Message></f:WSManFault></f:ProviderFault></f:Message></f:WSManFault></s:Detail></s:Fault></s:Body></s:Envelope>"#,
    // A fault with an MSFT_WmiError.
    r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><s:Body><s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>w:InternalError</s:Value></s:Subcode></s:Code><s:Reason><s:Text>Not found</s:Text></s:Reason><s:Detail><p:MSFT_WmiError xmlns:p="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/MSFT_WmiError"><p:CIMStatusCode>6</p:CIMStatusCode><p:Message>Not found</p:Message><p:error_Code>2147749890</p:error_Code><p:CIMStatusCodeDescription xsi:nil="true"/></p:MSFT_WmiError></s:Detail></s:Fault></s:Body></s:Envelope>"#,
    // An embedded instance (CIM-XML), as GetErrorEx and the driver's parameters carry them.
    r#"<INSTANCE CLASSNAME="Msvm_Error"><PROPERTY NAME="CIMStatusCode" TYPE="uint32"><VALUE>2</VALUE></PROPERTY><PROPERTY.ARRAY NAME="MessageArguments" TYPE="string"><VALUE.ARRAY><VALUE>a</VALUE><VALUE>b</VALUE></VALUE.ARRAY></PROPERTY.ARRAY><PROPERTY NAME="Message" TYPE="string"><VALUE>denied &amp; refused</VALUE></PROPERTY></INSTANCE>"#,
];

/// Every parser the driver runs on what a host sends, on one text.
fn parse_everything(text: &str) {
    if let Ok(body) = soap::parse_response(text, "uuid:1") {
        let _ = soap::parse_page(&body);
        for m in [
            "MigrateVirtualSystemToHost",
            "GetErrorEx",
            "RequestStateChange",
        ] {
            if let Ok(out) = soap::parse_output(&body, m) {
                let _ = out.get_ref("Job").and_then(JobRef::from_epr);
                let _ = out.get_array("Errors");
                let _ = out.get_u32("ReturnValue");
            }
        }
    }
    if let Ok(el) = vmove_driver_hyperv::xml::parse(text) {
        let _ = soap::parse_fault(&el);
        let i = CimInstance::from_wsman(&el);
        let _ = vmove_driver_hyperv::job::phase_of(&i);
        let _ = vmove_driver_hyperv::job::failure(&i, &[]);
        let _ = vmove_driver_hyperv::cim::Epr::from_element(&el);
    }
    if let Ok(i) = CimInstance::from_cim_xml(text) {
        let _ = i.to_cim_xml();
    }
    let _ = JobError::parse(text);
    let _ = JobRef::decode(text);
}

/// One mutation of a seed: cut, duplicate, insert or replace a span.
fn mutate(seed: &str, at: usize, len: usize, with: &str, kind: u8) -> String {
    let b = seed.as_bytes();
    let at = at % (b.len() + 1);
    let end = (at + len).min(b.len());
    let mut out: Vec<u8> = Vec::with_capacity(b.len() + with.len());
    out.extend_from_slice(&b[..at]);
    match kind % 4 {
        0 => {}                                            // cut [at, end)
        1 => out.extend_from_slice(&b[at..end].repeat(3)), // duplicate
        2 => {
            out.extend_from_slice(with.as_bytes()); // insert
            out.extend_from_slice(&b[at..end]);
        }
        _ => out.extend_from_slice(with.as_bytes()), // replace
    }
    out.extend_from_slice(&b[end..]);
    String::from_utf8_lossy(&out).into_owned()
}

/// Fragments that mean something to the parsers.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("<".to_owned()),
        Just(">".to_owned()),
        Just("</".to_owned()),
        Just("/>".to_owned()),
        Just("&amp;".to_owned()),
        Just("&#x0;".to_owned()),
        Just("&#1114112;".to_owned()),
        Just("&bogus;".to_owned()),
        Just("<![CDATA[".to_owned()),
        Just("xmlns:p=\"\"".to_owned()),
        Just("xsi:nil=\"true\"".to_owned()),
        Just("<VALUE.ARRAY>".to_owned()),
        Just("<PROPERTY.REFERENCE NAME=\"x\">".to_owned()),
        Just("<s:Fault>".to_owned()),
        Just("<w:Item>".to_owned()),
        Just("|".to_owned()),
        Just("=".to_owned()),
        Just("%".to_owned()),
        Just("99999999999999999999999".to_owned()),
        Just("-1".to_owned()),
        "\\PC{0,12}",
    ]
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics_a_parser(text in "\\PC{0,400}") {
        parse_everything(&text);
    }

    #[test]
    fn arbitrary_bytes_never_panic_a_parser(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        parse_everything(&String::from_utf8_lossy(&bytes));
        let _ = sealing::unframe(&bytes);
        let _ = sealing::header_len(&bytes);
    }

    #[test]
    fn mutated_real_messages_never_panic_a_parser(
        seed in 0..SEEDS.len(),
        edits in proptest::collection::vec((any::<usize>(), 0usize..64, fragment(), any::<u8>()), 1..6),
    ) {
        let mut text = SEEDS[seed].to_owned();
        for (at, len, with, kind) in edits {
            text = mutate(&text, at, len, &with, kind);
        }
        parse_everything(&text);
    }

    #[test]
    fn mutated_sealed_frames_never_panic_unframe(
        header in proptest::collection::vec(any::<u8>(), 0..80),
        data in proptest::collection::vec(any::<u8>(), 0..200),
        announced in any::<u32>(),
        close in 0u8..4,
        cut in any::<usize>(),
    ) {
        let mut body = Vec::new();
        body.extend_from_slice(b"--Encrypted Boundary\r\n\tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=");
        body.extend_from_slice(data.len().to_string().as_bytes());
        body.extend_from_slice(b"\r\n--Encrypted Boundary\r\n\tContent-Type: application/octet-stream\r\n");
        body.extend_from_slice(&announced.to_le_bytes());
        body.extend_from_slice(&header);
        body.extend_from_slice(&data);
        body.extend_from_slice(match close {
            0 => &b"--Encrypted Boundary--\r\n"[..],
            1 => b"--Encrypted Boundary\r\n",
            2 => b"--Encrypted Boundary",
            _ => b"",
        });
        let _ = sealing::unframe(&body);
        let cut = cut % (body.len() + 1);
        let _ = sealing::unframe(&body[..cut]);
        let _ = sealing::unframe(&body[cut..]);
    }
}

/// Deeply nested input must fail cleanly, not overflow the stack (the tree is walked and
/// dropped recursively).
#[test]
fn deeply_nested_documents_are_refused_without_overflowing_the_stack() {
    let depth = 200_000;
    let text = format!("{}{}", "<a>".repeat(depth), "</a>".repeat(depth));
    parse_everything(&text);
    let env = format!(
        "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Body>{}{}</s:Body></s:Envelope>",
        "<x>".repeat(depth),
        "</x>".repeat(depth)
    );
    assert!(soap::parse_response(&env, "uuid:1").is_err());
}
